"""Run untrusted model-written Python in a throw-away subprocess: time, memory and file limits, no network.

HumanEval and MBPP score a model by executing its code. The child gets a fresh temp directory as cwd, an
environment with nothing but PATH/HOME/LANG (so no API keys leak), rlimits set before exec, its own process
group (killed whole on timeout), a network namespace without interfaces when `unshare -n` works (root), and
always an audit hook that refuses sockets and new processes, which covers machines where namespaces are
unavailable."""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

_GUARD = """
import runpy, sys

_BLOCKED = ("socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "subprocess.Popen",
            "os.system", "os.exec", "os.posix_spawn", "os.fork", "os.forkpty", "pty.spawn")


def _audit(event, args):
    if event in _BLOCKED:
        raise PermissionError(f"sandbox: {event} is not allowed")


sys.addaudithook(_audit)
runpy.run_path("program.py", run_name="__main__")
"""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource caps for one execution; defaults suit benchmark unit tests."""

    timeout_s: float = 10.0
    memory_mb: int = 1024
    cpu_s: int = 10
    max_open_files: int = 64
    max_file_mb: int = 16


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one run: `passed` means exit status 0 within the time limit."""

    passed: bool
    returncode: int | None
    timed_out: bool
    stdout: str
    stderr: str


_UNSHARE = ("-n", "-p", "-f", "--mount-proc")


@functools.cache
def network_namespace_available() -> bool:
    """Whether `unshare` can give the child its own empty network namespace and its own pid namespace with a
    fresh /proc (needs root or user namespaces). The pid namespace hides `/proc/<parent>/environ`, where the
    parent's API key would otherwise be readable."""
    binary = shutil.which("unshare")
    if binary is None:
        return False
    probe = subprocess.run([binary, *_UNSHARE, "true"], capture_output=True, timeout=10, check=False)
    return probe.returncode == 0


def _limit_resources(limits: SandboxLimits) -> None:
    """Applied in the child between fork and exec."""
    memory = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.max_open_files, limits.max_open_files))
    size = limits.max_file_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def run_python(code: str, limits: SandboxLimits | None = None) -> ExecResult:
    """Execute `code` as `__main__` in the sandbox and report how it ended."""
    limits = limits or SandboxLimits()
    with tempfile.TemporaryDirectory(prefix="glan-sandbox-") as workdir:
        Path(workdir, "program.py").write_text(code, encoding="utf-8")
        Path(workdir, "guard.py").write_text(_GUARD, encoding="utf-8")
        command = [sys.executable, "-I", "guard.py"]
        if network_namespace_available():
            command = ["unshare", *_UNSHARE, "--", *command]
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=functools.partial(_limit_resources, limits),
        )
        try:
            out, err = proc.communicate(timeout=limits.timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            timed_out = True
    return ExecResult(
        passed=not timed_out and proc.returncode == 0,
        returncode=proc.returncode,
        timed_out=timed_out,
        stdout=out.decode(errors="replace")[-4000:],
        stderr=err.decode(errors="replace")[-4000:],
    )
