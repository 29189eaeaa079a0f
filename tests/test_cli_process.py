"""The real `glan` command in a subprocess: fast help, checks before compute, Ctrl-C, status and resume.

The interrupt test runs the repository's notebooks 01-02 against the loopback OpenAI server, sends SIGINT to
`glan run` as a terminal's Ctrl-C would (the process group; kernels live in their own session), then checks
the one-line explanation, the manifest, `glan status` from another directory without `-c`, and that
`glan run R --resume` continues the same run with its settings file and stage range.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import yaml

from glan_utils.testing import OpenAIServer

REPO = Path(__file__).resolve().parents[1]
GLAN = [sys.executable, "-c", "from glan_utils.app.cli import app; app()"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of every `glan` call: this checkout first, the run index and caches inside the test."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GLAN_", "OPENAI_"))}
    python_path = os.pathsep.join(p for p in (str(REPO), environ.get("PYTHONPATH", "")) if p)
    return {**environ, "PYTHONPATH": python_path, "GLAN_CACHE_DIR": str(tmp_path / "cache")}


def glan(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GLAN, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def settings_file(folder: Path, base_url: str, llm: dict[str, object] | None = None, **extra: object) -> Path:
    """A settings file with its own output_dir, as a researcher writes one (not the default outputs/)."""
    endpoint = {"base_url": base_url, "model": "fake-model", "cache_path": str(folder / "cache.sqlite")}
    settings = {
        "output_dir": str(folder / "elsewhere"),
        "llm": {**endpoint, **(llm or {})},
        "taxonomy": {"n_fields": 1, "n_subfields": 1, "n_disciplines": 2},
        **extra,
    }
    path = folder / "settings.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def one_line(result: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    assert result.stderr.strip().count("\n") == 0 and needle in result.stderr, result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_help_is_light_lists_stages_and_version(tmp_path: Path, env: dict[str, str]) -> None:
    heavy = ("pandas", "papermill", "nbformat", "nbconvert", "openai", "aiohttp", "plotly")
    probe = f"import sys, glan_utils.app.cli; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]", "importing the CLI must not load the heavy layers"
    helped = glan("run", "--help", env=env, cwd=REPO)
    assert helped.returncode == 0 and "01_taxonomy" in helped.stdout and "07_evaluation" in helped.stdout
    assert glan("--version", env=env, cwd=tmp_path).stdout.startswith("glan 0.")
    status_help = glan("status", "--help", env=env, cwd=tmp_path).stdout
    assert "run index" in status_help


def test_did_you_mean_for_keys_and_parameters(tmp_path: Path, env: dict[str, str]) -> None:
    one_line(glan("run", "r", "-p", "subjects.rouds", "2", env=env, cwd=REPO), 2, "did you mean subjects.rounds?")
    typo = glan("run", "r", "-p", "questions_per_syllabuss", "2", env=env, cwd=REPO)
    one_line(typo, 2, "did you mean questions_per_syllabus")
    assert typo.stderr.count(",") <= 2, "only the closest names, not every parameter"
    bad = tmp_path / "bad.yaml"
    bad.write_text("subjects:\n  rouds: 2\n")
    one_line(glan("run", "r", "-c", str(bad), env=env, cwd=REPO), 2, f"in {bad}: subjects.rouds: unknown key")


def test_everything_checkable_fails_before_any_notebook(tmp_path: Path, env: dict[str, str]) -> None:
    refused = settings_file(tmp_path, f"http://127.0.0.1:{free_port()}/v1")
    one_line(glan("run", "r", "-c", str(refused), env=env, cwd=REPO), 2, "connection refused")
    with socket.socket() as silent:  # accepts connections (the backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        quiet = settings_file(tmp_path, f"http://127.0.0.1:{silent.getsockname()[1]}/v1", {"timeout_s": 1})
        one_line(glan("run", "r", "-c", str(quiet), env=env, cwd=REPO), 2, "timed out")
    with OpenAIServer(models=["other-model"]) as server:
        one_line(
            glan("run", "r", "-c", str(settings_file(tmp_path, server.base_url)), env=env, cwd=REPO),
            2,
            "model 'fake-model' is not served",
        )
    remote = settings_file(tmp_path, "https://api.example.com/v1")
    one_line(glan("run", "r", "-c", str(remote), env=env, cwd=REPO), 2, "no API key for https://api.example.com/v1")
    no_taxonomy = settings_file(tmp_path, "http://127.0.0.1:1/v1", taxonomy={"source": str(tmp_path / "t.yaml")})
    one_line(glan("run", "r", "-c", str(no_taxonomy), env=env, cwd=REPO), 2, "taxonomy file not found")
    assert not (tmp_path / "elsewhere" / "r" / "notebooks").exists(), "no notebook started"


def _wait_for_records(path: Path, proc: subprocess.Popen[str], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= 2:
            return
        if proc.poll() is not None:
            raise AssertionError(f"glan ended early: {proc.communicate()}")
        time.sleep(0.2)
    raise AssertionError(f"no records in {path} after {timeout} s")


@pytest.fixture
def slow_server() -> Iterator[OpenAIServer]:
    with OpenAIServer(models=["fake-model"], latency_s=0.3) as server:
        yield server


@pytest.mark.slow
def test_sigint_explains_then_resume_continues_the_same_run(
    tmp_path: Path, env: dict[str, str], slow_server: OpenAIServer
) -> None:
    # 2 disciplines x 20 rounds at 0.3 s each: the interrupt lands well before the stage could finish
    config = settings_file(tmp_path, slow_server.base_url, {"concurrency": 1}, subjects={"rounds": 20})
    run_dir = tmp_path / "elsewhere" / "R"
    proc = subprocess.Popen(
        [*GLAN, "run", "R", "-c", str(config), "--to", "2"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for_records(run_dir / "subject_rounds.jsonl", proc)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "ZMQError" not in err and "TCP without encryption" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("glan: interrupted (SIGINT) during 02_subjects; saved: subject_rounds "), err
    assert f"resume with: glan run R --resume -c {config}" in line
    assert "run 'R' stopped in" in out, "a closing summary line even when stopped"

    manifest = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert manifest["01_taxonomy"]["status"] == "complete"
    assert manifest["02_subjects"]["status"] == manifest["subject_rounds"]["status"] == "interrupted"
    lines = (run_dir / "subject_rounds.jsonl").read_bytes().count(b"\n")

    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    status = glan("status", "R", env=env, cwd=elsewhere)  # no -c: found through the run index
    assert status.returncode == 0, status.stderr
    assert not re.search(r"\|\s*running\s*\|", status.stdout), status.stdout
    assert re.search(r"\| subject_rounds\s+\| interrupted", status.stdout), status.stdout
    assert "| answers" in status.stdout and "pending" in status.stdout, "stages not begun still get a row"

    served = slow_server.count
    resumed = glan("run", "R", "--resume", env=env, cwd=elsewhere, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "01_taxonomy: complete, skipped" in resumed.stdout
    on_disk = f"02_subjects: resuming; already on disk: subject_rounds {lines} records (interrupted)"
    assert on_disk in resumed.stdout
    assert "03_syllabi" not in resumed.stdout, "--to 2 is remembered"
    assert resumed.stdout.strip().splitlines()[-1].startswith("run 'R' done in ")
    manifest = json.loads((run_dir / "manifest.json").read_text())["stages"]
    for stage in ("subjects", "subject_rounds"):
        assert manifest[stage]["records_written"] == (run_dir / f"{stage}.jsonl").read_bytes().count(b"\n")
    ids = [json.loads(row)["id"] for row in (run_dir / "subject_rounds.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)), "no record written twice"
    rounds = 2 * 20
    assert slow_server.count - served <= rounds - lines + 1, "only the rounds not yet on disk were asked again"


def test_sigterm_marks_the_notebook_interrupted(tmp_path: Path, env: dict[str, str]) -> None:
    folder = tmp_path / "nb"
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('run_name = "demo"\noutput_dir = "outputs"')
    params.metadata["tags"] = ["parameters"]
    work = "import time, pathlib\npathlib.Path(output_dir, run_name, 'started').touch()\ntime.sleep(120)"
    nb.cells = [params, nbformat.v4.new_code_cell(work)]
    nbformat.write(nb, folder / "01_slow.ipynb")
    proc = subprocess.Popen(
        [*GLAN, "run", "S", "--notebooks", str(folder)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "outputs" / "S" / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].endswith("resume with: glan run S --resume"), err
    manifest = json.loads((tmp_path / "outputs" / "S" / "manifest.json").read_text())["stages"]
    assert manifest["01_slow"]["status"] == "interrupted"


def test_a_changed_seed_on_a_run_with_records_is_refused_then_replanned(tmp_path: Path, env: dict[str, str]) -> None:
    with OpenAIServer(models=["fake-model"]) as server:
        config = settings_file(tmp_path, server.base_url)
        run_dir = tmp_path / "elsewhere" / "R"
        assert glan("run", "R", "-c", str(config), "--to", "1", env=env, cwd=REPO).returncode == 0
        snapshot = (run_dir / "config.yaml").read_text()
        refused = glan("run", "R", "-c", str(config), "--to", "1", "-p", "seed", "3", env=env, cwd=REPO)
        one_line(refused, 2, "run 'R' was made with other settings (seed 0 -> 3)")
        assert "pick a new run name" in refused.stderr and "glan run R --replan" in refused.stderr
        assert (run_dir / "config.yaml").read_text() == snapshot, "a refused run rewrites nothing"
        replanned = glan("run", "R", "-c", str(config), "--to", "1", "-p", "seed", "3", "--replan", env=env, cwd=REPO)
        assert replanned.returncode == 0, replanned.stdout + replanned.stderr
        assert "replanned run 'R' (seed 0 -> 3)" in replanned.stdout
    seeds = {
        json.loads(line)["provenance"]["params"]["run_seed"]
        for line in (run_dir / "taxonomy.jsonl").read_text().splitlines()
    }
    assert seeds == {3}
    history = [json.loads(line) for line in (run_dir / "config.history.jsonl").read_text().splitlines()]
    assert any(h["config"]["seed"] == 0 and "seed" in (h["note"] or "") for h in history)
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["seed"] == 3


def test_a_stage_without_its_inputs_is_one_line_before_any_notebook(tmp_path: Path, env: dict[str, str]) -> None:
    with OpenAIServer(models=["fake-model"]) as server:
        config = settings_file(tmp_path, server.base_url)
        missing = glan("run", "R", "-c", str(config), "--from", "2", "--to", "2", env=env, cwd=REPO)
        one_line(missing, 2, "run 'R' has no taxonomy: run 01_taxonomy first")
        assert server.count == 0
    assert not (tmp_path / "elsewhere" / "R" / "notebooks" / "02_subjects.ipynb").exists(), "no notebook started"


def test_run_ticks_inside_a_stage_and_says_what_this_invocation_spent(tmp_path: Path, env: dict[str, str]) -> None:
    with OpenAIServer(models=["fake-model"], latency_s=0.15) as server:
        config = settings_file(tmp_path, server.base_url, {"concurrency": 1}, subjects={"rounds": 15})
        first = glan("run", "R", "-c", str(config), "--to", "2", "--tick", "1", env=env, cwd=REPO, timeout=300)
        assert first.returncode == 0, first.stdout + first.stderr
        ticks = re.findall(
            r"^02_subjects: subject_rounds (\d+)/30 tasks, 0 failed; \$0\.0000 in this notebook", first.stdout, re.M
        )
        assert ticks and int(ticks[-1]) <= 30, first.stdout
        calls = server.count
        closing = first.stdout.strip().splitlines()[-1]
        assert f": {calls:,} model calls" in closing and f"whole run so far: {calls:,} model calls" in closing
        again = glan("run", "R", "-c", str(config), "--from", "2", "--to", "2", "--tick", "0", env=env, cwd=REPO)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "tasks," not in again.stdout, "--tick 0: no progress lines"
        closing = again.stdout.strip().splitlines()[-1]
        assert ": 0 model calls" in closing and f"whole run so far: {calls:,} model calls" in closing
    status = glan("status", "R", "-c", str(config), env=env, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0] == f"run {tmp_path / 'elsewhere' / 'R'}"
    assert re.search(r"\| 01_taxonomy\s+\| complete", status.stdout), status.stdout
    assert re.search(r"\| 03_syllabi\s+\| not in range", status.stdout), status.stdout
    assert re.search(r"\| answers\s+\| not in range", status.stdout), status.stdout
