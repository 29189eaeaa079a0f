"""The code sandbox: a runaway program is killed, the network is refused, secrets never reach the child."""

from __future__ import annotations

import time

from glan_utils.evaluation.sandbox import SandboxLimits, run_python


def test_clean_program_passes_and_failing_assert_fails() -> None:
    assert run_python("assert sum([1, 2]) == 3\nprint('ok')").stdout == "ok\n"
    failed = run_python("assert 1 == 2")
    assert not failed.passed and "AssertionError" in failed.stderr


def test_timeout_kills_an_infinite_loop() -> None:
    start = time.perf_counter()
    result = run_python("while True:\n    pass\n", SandboxLimits(timeout_s=1.0))
    assert result.timed_out and not result.passed
    assert time.perf_counter() - start < 10


def test_network_is_refused() -> None:
    code = "import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 9))\n"
    result = run_python(code)
    assert not result.passed
    assert "not allowed" in result.stderr or "unreachable" in result.stderr.lower()


def test_environment_holds_no_secrets(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    result = run_python("import os\nprint(sorted(os.environ))\nprint(os.getcwd())")
    assert "OPENAI_API_KEY" not in result.stdout and "sk-secret" not in result.stdout
    assert "glan-sandbox-" in result.stdout


def test_memory_limit_and_subprocess_block() -> None:
    assert "MemoryError" in run_python("x = bytearray(4 * 1024**3)", SandboxLimits(memory_mb=512)).stderr
    assert "not allowed" in run_python("import subprocess\nsubprocess.run(['true'])").stderr
