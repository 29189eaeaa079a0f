"""Secrets: a planted API key reaches the endpoint and nothing else, not a file, not an error, not the sandbox.

The key lives in the environment variable named by `llm.api_key_env`; the test server REQUIRES it, so a run that
succeeds proves the key was sent. Then every file under the run's root (config snapshots, ledger, records, cache
DB, executed notebooks, HTML report) and every error message is searched for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path

import pytest
from support.reliability import pipeline_overrides, run_pipeline, settings_for

from glan_utils.core.aio import run
from glan_utils.core.errors import SetupError
from glan_utils.core.sandbox import SandboxLimits, run_python
from glan_utils.stages import pipeline
from glan_utils.testing import OpenAIServer

KEY_ENV = "RELIABILITY_TEST_API_KEY"
KEY = "sk-reliability-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _files_containing(root: Path, secret: str) -> list[Path]:
    needle = secret.encode()
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def _error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc)


@pytest.fixture
def keyed_server() -> OpenAIServer:
    with OpenAIServer(api_key=KEY) as server:
        yield server


def test_pipeline_run_leaves_no_key_on_disk(
    tmp_path: Path, keyed_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    settings = settings_for({**pipeline_overrides(tmp_path, keyed_server.base_url), "llm.api_key_env": KEY_ENV})
    reports = run(run_pipeline(settings))
    assert reports["answers"]["records_written"] > 0
    assert keyed_server.stats()["counts_by_kind"].get("unauthorized", 0) == 0
    assert list(tmp_path.rglob("*.sqlite")) and list(tmp_path.rglob("ledger.jsonl"))
    assert _files_containing(tmp_path, KEY) == []
    assert KEY_ENV in settings.run_dir.joinpath("config.yaml").read_text()  # the variable's name only


def test_wrong_key_error_does_not_echo_it(
    tmp_path: Path, keyed_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "sk-wrong-0123456789abcdef0123456789abcdef"
    monkeypatch.setenv(KEY_ENV, wrong)
    settings = settings_for({**pipeline_overrides(tmp_path, keyed_server.base_url), "llm.api_key_env": KEY_ENV})
    run(pipeline.run(settings, "taxonomy"))
    with pytest.raises(SetupError) as exc:
        run(pipeline.run(settings, "subjects"))
    assert "authentication failed" in str(exc.value)
    assert wrong not in _error_text(exc.value) and KEY not in _error_text(exc.value)
    assert _files_containing(tmp_path, wrong) == []


@pytest.mark.slow
def test_cli_run_and_report_leave_no_key(tmp_path: Path, keyed_server: OpenAIServer) -> None:
    """`glan run` (notebooks 01-04 via papermill) and `glan report`, with the key only in the environment."""
    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text("Mathematics:\n  Algebra: [Linear Algebra]\n", encoding="utf-8")
    glan = str(Path(sys.executable).with_name("glan"))
    env = {**os.environ, KEY_ENV: KEY}
    params = [
        "--params",
        str(NOTEBOOKS.parent / "configs" / "test.yaml"),
        "-p",
        "base_url",
        keyed_server.base_url,
        "-p",
        "taxonomy_file",
        str(taxonomy),
        "-p",
        "llm.api_key_env",
        KEY_ENV,
        "-p",
        "llm.cache_path",
        str(tmp_path / "cache.sqlite"),
    ]
    for command in (["run", "sec", "--to", "4", "--notebooks", str(NOTEBOOKS), *params], ["report", "sec"]):
        done = subprocess.run(
            [glan, *command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert KEY not in done.stdout + done.stderr
    run_dir = tmp_path / "outputs" / "sec"
    assert list(run_dir.glob("notebooks/*.ipynb")) and list(run_dir.glob("*.html"))
    assert keyed_server.count > 0 and keyed_server.stats()["counts_by_kind"].get("unauthorized", 0) == 0
    assert _files_containing(tmp_path, KEY) == []


_SNOOP = textwrap.dedent("""
    import os, pathlib
    found = [k for k, v in os.environ.items() if "sk-reliability" in v]
    for pid in ("self", str(os.getppid())):
        try:
            if b"sk-reliability" in pathlib.Path(f"/proc/{pid}/environ").read_bytes():
                found.append(f"/proc/{pid}/environ")
        except OSError:
            pass
    print("LEAK" if found else "CLEAN", found)
""")


def test_sandbox_child_sees_no_key() -> None:
    """Run the sandbox from a process born with the key, so even `/proc/<parent>/environ` would show it."""
    driver = (
        "import sys; from glan_utils.core.sandbox import run_python; r = run_python(sys.argv[1]); "
        "print(r.stdout, r.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", driver, _SNOOP],
        env={**os.environ, KEY_ENV: KEY},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "CLEAN" in done.stdout, done.stdout + done.stderr


def test_sandbox_has_no_network_and_enforces_limits(keyed_server: OpenAIServer) -> None:
    port = keyed_server.port
    net = run_python(f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/v1/models')")
    assert not net.passed and keyed_server.count == 0
    slow = run_python("while True:\n    pass\n", SandboxLimits(timeout_s=1, cpu_s=5))
    assert slow.timed_out and not slow.passed
    hog = run_python("x = bytearray(2 * 1024**3)\n", SandboxLimits(memory_mb=256))
    assert not hog.passed and "MemoryError" in hog.stderr
