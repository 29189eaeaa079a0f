"""Run untrusted model-written Python (HumanEval, MBPP) in a throw-away bubblewrap sandbox.

Benchmarks score a model by executing its code, so that code is hostile until proven otherwise. A Python audit
hook is not a boundary (`ctypes.CDLL(None).system(...)` never raises an audit event), so the child runs under
bubblewrap (`bwrap`):

- a new mount namespace holding only the base interpreter's prefix and the system libraries, read-only; not the
  repository, not /root or $HOME, not /work, not the host's /tmp;
- a private, size-capped tmpfs at /tmp as work dir; the program arrives through a memfd, so nothing is written on
  the host;
- no network (its own empty network namespace), its own pid, ipc and uts namespaces, a new session, dies with us;
- uid 65534 with no capabilities and an empty environment (no API keys);
- rlimits: address space, CPU seconds, file size, open files, and processes (a fork bomb is bounded);
- stdout/stderr read with a cap, so a flood can neither hang nor exhaust the parent.

Where bwrap is missing or fails its probe, running is refused with one line saying how to fix it, unless the user
opts in to the old weak isolation (`unshare` + audit hook) twice: `SandboxLimits(allow_weak_isolation=True)` and
`GLAN_SANDBOX_ALLOW_WEAK=1`. `isolation()` says which one is in use, for the evaluation report.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from glan_utils.core.errors import SandboxUnavailableError

log = logging.getLogger(__name__)

WEAK_ENV = "GLAN_SANDBOX_ALLOW_WEAK"
SANDBOX_UID = 65534  # "nobody": owns nothing on the host
WORKDIR = "/tmp/glan-sandbox"
_PROGRAM_FD_PATH = f"{WORKDIR}/program.py"
_KEEP_BYTES = 64 * 1024  # tail of each stream kept in memory; ExecResult returns its last 4000 characters
_DRAIN_GRACE_S = 5.0
_SYSTEM_LIBS = ("/usr/lib", "/usr/lib64", "/usr/lib32", "/lib", "/lib64", "/lib32")

# Runs inside bwrap before the program: drop root (root mode only), bound processes, refuse to go on if any
# capability or uid 0 survived. RLIMIT_NPROC is set here, not before exec: inside a user namespace the kernel
# counts this namespace's processes only, while set outside it would count every process of the host user.
_BWRAP_GUARD = """
import os, resource, runpy, sys
uid, nproc, drop = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "drop"
if drop:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
with open("/proc/self/status") as status:
    caps = [line.split()[1] for line in status if line.startswith(("CapPrm:", "CapEff:", "CapAmb:"))]
if os.getuid() == 0 or os.geteuid() == 0 or any(int(c, 16) for c in caps):
    sys.exit("sandbox: privileges were not dropped; refusing to run the program")
sys.argv = ["program.py"]
runpy.run_path("program.py", run_name="__main__")
"""

# The weak path (opt-in only): an audit hook refusing sockets and new processes. Bypassed by ctypes.
_WEAK_GUARD = """
import runpy, sys

_BLOCKED = ("socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "subprocess.Popen",
            "os.system", "os.exec", "os.posix_spawn", "os.fork", "os.forkpty", "pty.spawn")


def _audit(event, args):
    if event in _BLOCKED:
        raise PermissionError(f"sandbox: {event} is not allowed")


sys.addaudithook(_audit)
runpy.run_path("program.py", run_name="__main__")
"""

_UNSHARE = ("-n", "-p", "-f", "--mount-proc")

# Imports extension modules after the uid drop, so a library directory uid 65534 cannot read fails the probe.
_PROBE = "import collections, decimal, json, math\nprint('sandbox-ok')\n"


class WeakIsolationWarning(UserWarning):
    """Model-written code ran without bubblewrap because the user opted in to weak isolation."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource caps for one execution; defaults suit benchmark unit tests.

    `memory_mb` and `cpu_s` are per process (rlimits, no cgroup), so the worst case is `max_processes` times them.
    `max_processes` counts threads too. `allow_weak_isolation` alone does nothing: the weak path also needs
    GLAN_SANDBOX_ALLOW_WEAK=1, so neither a config file nor a stray variable can downgrade isolation by itself.
    """

    timeout_s: float = 10.0
    memory_mb: int = 1024
    cpu_s: int = 10
    max_open_files: int = 64
    max_file_mb: int = 16
    max_processes: int = 32
    max_output_mb: int = 8
    workdir_mb: int = 64
    allow_weak_isolation: bool = False


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one run: `passed` means exit status 0 within the time and output limits."""

    passed: bool
    returncode: int | None
    timed_out: bool
    stdout: str
    stderr: str
    isolation: str = ""
    output_truncated: bool = False


@dataclass(frozen=True)
class Isolation:
    """Which isolation `run_python` would use: "bwrap", "weak" (opted in) or "none" (it refuses to run)."""

    level: Literal["bwrap", "weak", "none"]
    detail: str

    def __str__(self) -> str:
        return f"{self.level}: {self.detail}"


# ---------------------------------------------------------------------------------------------------- probing


def _bwrap_binary() -> str | None:
    """bwrap on the current PATH (looked up on every call, so PATH changes are honoured)."""
    return shutil.which("bwrap")


def _root_mode() -> bool:
    """Whether we run as host root. Then a user namespace would map the sandbox uid back to host uid 0, which the
    kernel exempts from RLIMIT_NPROC; so bwrap keeps root-owned namespaces and the guard drops to 65534 itself."""
    return os.geteuid() == 0


def _interpreter() -> tuple[str, list[str]]:
    """The real base interpreter and the prefixes it needs. A venv's python is a symlink (or copy) outside the base
    prefix; the child needs only the stdlib, so it runs the base interpreter and never sees the venv."""
    prefixes = list(dict.fromkeys(str(Path(p).resolve()) for p in (sys.base_prefix, sys.base_exec_prefix)))
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [Path(sys.executable).resolve(), *(Path(p) / "bin" / version for p in prefixes)]
    for exe in candidates:
        if exe.is_file() and any(exe.is_relative_to(p) for p in prefixes):
            return str(exe), prefixes
    return str(candidates[0]), [*prefixes, str(candidates[0])]


def _ancestor_dirs(path: str) -> list[str]:
    """`/a`, `/a/b` for `/a/b/c`: the directories bwrap must create before it can bind `path`."""
    parts = Path(path).parts[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _mount_args(prefixes: Sequence[str]) -> list[str]:
    """Read-only system libraries and interpreter prefixes; symlinked /lib etc. (merged /usr) stay symlinks.

    bwrap would create the parents of a bind as 0700 root, which uid 65534 cannot traverse, so they are made
    explicitly: 0755 above the system libraries (/usr), 0711 above a prefix, so the interpreter under
    /root/.pyenv is reachable while /root itself cannot even be listed."""
    args: list[str] = []
    made: set[str] = {"/tmp"}
    binds = [(lib, "0755") for lib in _SYSTEM_LIBS if os.path.isdir(lib) and not os.path.islink(lib)]
    for target, mode in [*binds, *((prefix, "0711") for prefix in prefixes)]:
        for parent in _ancestor_dirs(target):
            if parent not in made:
                made.add(parent)
                args += ["--perms", mode, "--dir", parent]
        args += ["--ro-bind", target, target]
    for lib in _SYSTEM_LIBS:
        if os.path.islink(lib):
            args += ["--symlink", os.readlink(lib), lib]
    return args


@functools.cache
def _supports_disable_userns(binary: str) -> bool:
    """`--disable-userns` (bwrap >= 0.8) stops the child from making nested user namespaces; older bwrap lacks it."""
    done = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10, check=False)
    return "--disable-userns" in done.stdout


def _namespace_args(binary: str) -> list[str]:
    """Namespaces and identity: a user namespace as uid 65534 normally; as host root, root-owned namespaces with only
    CAP_SETUID/CAP_SETGID left for the guard, which drops to uid 65534 (a real unprivileged host uid)."""
    common = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    if _root_mode():
        return [*common, "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    user = ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    return [*common, *user, *(["--disable-userns"] if _supports_disable_userns(binary) else [])]


def _bwrap_command(binary: str, program_fd: int, limits: SandboxLimits) -> list[str]:
    """The full bwrap command line for one run; the program is copied in from `program_fd`."""
    exe, prefixes = _interpreter()
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": WORKDIR, "PYTHONDONTWRITEBYTECODE": "1"}
    return [
        binary,
        *_namespace_args(binary),
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        *[arg for key, value in env.items() for arg in ("--setenv", key, value)],
        "--size", str(limits.workdir_mb * 1024 * 1024), "--perms", "1777", "--tmpfs", "/tmp",
        *_mount_args(prefixes),
        "--proc", "/proc",
        "--dev", "/dev",
        "--perms", "1777", "--dir", WORKDIR,
        "--perms", "0444", "--file", str(program_fd), _PROGRAM_FD_PATH,
        "--chdir", WORKDIR,
        exe, "-I", "-c", _BWRAP_GUARD,
        str(SANDBOX_UID), str(limits.max_processes), "drop" if _root_mode() else "keep",
    ]  # fmt: skip


@functools.cache
def _bwrap_problem(binary: str | None) -> str | None:
    """Why bwrap cannot isolate here (None when it can): run the real command on a one-line program."""
    if binary is None:
        return "bubblewrap (bwrap) is not installed"
    try:
        result = _run_bwrap(binary, _PROBE, SandboxLimits(timeout_s=30))
    except OSError as exc:
        return f"bwrap could not start: {exc}"
    if result.stdout.strip() == "sandbox-ok" and result.passed:
        return None
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    reason = lines[-1] if lines else f"exit {result.returncode}"  # bwrap's one line, or a traceback's last
    return f"bwrap failed its probe: {reason.strip()[:200]}"


@functools.cache
def _bwrap_version(binary: str) -> str:
    """The version line ("bubblewrap 0.8.0") for the report."""
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
    return done.stdout.strip() or "bubblewrap"


@functools.cache
def network_namespace_available() -> bool:
    """Weak path only: whether `unshare` can give the child an empty network namespace and its own pid namespace
    with a fresh /proc (hiding `/proc/<parent>/environ`). Needs root or user namespaces."""
    binary = shutil.which("unshare")
    if binary is None:
        return False
    probe = subprocess.run([binary, *_UNSHARE, "true"], capture_output=True, timeout=10, check=False)
    return probe.returncode == 0


def _weak_allowed(limits: SandboxLimits | None) -> bool:
    """Both opt-ins: the limits flag and the environment variable."""
    return bool(limits and limits.allow_weak_isolation) and os.environ.get(WEAK_ENV) == "1"


def _refusal(problem: str) -> str:
    """The one line a user sees when code would run unisolated: what is wrong and the three ways out."""
    return (
        f"refusing to run model-written code without a sandbox: {problem}. Fix: `bash scripts/install_sandbox.sh` "
        "(apt-get install bubblewrap) and allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1"
        ", user.max_user_namespaces>0; in a container allow unshare/mount), or accept weak isolation (unshare + audit "
        f"hook, not a security boundary) with SandboxLimits(allow_weak_isolation=True) and {WEAK_ENV}=1"
    )


def isolation(limits: SandboxLimits | None = None) -> Isolation:
    """Which isolation `run_python(code, limits)` would use here, with a one-line description for reports."""
    binary = _bwrap_binary()
    problem = _bwrap_problem(binary)
    if problem is None and binary is not None:
        who = "host root, uid dropped to 65534" if _root_mode() else "user namespace, uid 65534"
        return Isolation(
            "bwrap",
            f"{_bwrap_version(binary)}: read-only interpreter prefix and system libraries only, private tmpfs "
            f"work dir, no network, own pid/ipc/uts namespaces, {who}, no capabilities, rlimits",
        )
    if _weak_allowed(limits):
        net = "unshare -n -p" if network_namespace_available() else "no namespaces"
        return Isolation("weak", f"{net} + audit hook (opted in with {WEAK_ENV}=1; NOT a security boundary): {problem}")
    return Isolation("none", _refusal(problem or "unknown"))


# -------------------------------------------------------------------------------------------------- execution


def _limit_resources(limits: SandboxLimits) -> None:
    """Applied in the child between fork and exec; bwrap and everything under it inherit them."""
    memory = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.max_open_files, limits.max_open_files))
    size = limits.max_file_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's process group. Under bwrap that takes down the sandbox's init, and with it every
    process in its pid namespace (bwrap's --die-with-parent and pid-namespace teardown)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class _Streams:
    """What `_pump` collected: the tail of each stream and why reading stopped."""

    stdout: bytes
    stderr: bytes
    timed_out: bool
    flooded: bool


def _read_ready(selector: selectors.BaseSelector, kept: dict[int, bytearray], timeout: float) -> int:
    """Read what the pipes have within `timeout`, keep each stream's tail, and return the bytes read; a pipe at EOF
    is unregistered."""
    total = 0
    for key, _ in selector.select(timeout=timeout):
        chunk = os.read(key.fd, 65536)
        if not chunk:
            selector.unregister(key.fd)
            continue
        total += len(chunk)
        buffer = kept[key.fd]
        buffer += chunk
        del buffer[:-_KEEP_BYTES]
    return total


def _pump(proc: subprocess.Popen[bytes], timeout_s: float, max_output: int) -> _Streams:
    """Read both pipes until EOF and the child until exit, keeping only a tail of each stream; kill it on timeout
    or once `max_output` bytes have come out. Unlike `communicate()`, memory stays bounded whatever it prints."""
    assert proc.stdout is not None and proc.stderr is not None
    kept = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    total, timed_out, flooded, killed = 0, False, False, False
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        for fd in kept:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if killed:
                    break  # something still holds the pipes after SIGKILL: stop reading
                timed_out, killed = True, True
                _kill(proc)
                deadline = time.monotonic() + _DRAIN_GRACE_S
                continue
            total += _read_ready(selector, kept, remaining)
            if total > max_output and not killed:
                flooded, killed = True, True
                _kill(proc)
                deadline = time.monotonic() + _DRAIN_GRACE_S
    if not killed:  # the pipes closed, but a program that closed them itself may still be running
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(proc)
    return _Streams(bytes(kept[proc.stdout.fileno()]), bytes(kept[proc.stderr.fileno()]), timed_out, flooded)


def _execute(
    command: list[str], limits: SandboxLimits, *, cwd: str, pass_fds: Sequence[int] = (), label: str
) -> ExecResult:
    """Start `command` with a minimal environment and the rlimits, and collect its bounded output."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        pass_fds=tuple(pass_fds),
        preexec_fn=functools.partial(_limit_resources, limits),
    )
    with proc:
        streams = _pump(proc, limits.timeout_s, limits.max_output_mb * 1024 * 1024)
        try:
            proc.wait(timeout=_DRAIN_GRACE_S)
        except subprocess.TimeoutExpired:
            _kill(proc)
            proc.wait()
    stderr = streams.stderr.decode(errors="replace")
    if streams.flooded:
        stderr += f"\nsandbox: output exceeded {limits.max_output_mb} MB; the program was killed"
    return ExecResult(
        passed=not streams.timed_out and not streams.flooded and proc.returncode == 0,
        returncode=proc.returncode,
        timed_out=streams.timed_out,
        stdout=streams.stdout.decode(errors="replace")[-4000:],
        stderr=stderr[-4000:],
        isolation=label,
        output_truncated=streams.flooded,
    )


def _run_bwrap(binary: str, code: str, limits: SandboxLimits) -> ExecResult:
    """One run under bwrap. The program goes in through a memfd, so no file is written on the host."""
    program_fd = os.memfd_create("glan-sandbox-program")
    try:
        os.write(program_fd, code.encode("utf-8"))
        os.lseek(program_fd, 0, os.SEEK_SET)
        command = _bwrap_command(binary, program_fd, limits)
        return _execute(command, limits, cwd="/", pass_fds=(program_fd,), label="bwrap")
    finally:
        os.close(program_fd)


def _run_weak(code: str, limits: SandboxLimits) -> ExecResult:
    """The opted-in fallback: a host temp dir as cwd, `unshare -n -p` where it works, and the audit hook."""
    with tempfile.TemporaryDirectory(prefix="glan-sandbox-") as workdir:
        Path(workdir, "program.py").write_text(code, encoding="utf-8")
        Path(workdir, "guard.py").write_text(_WEAK_GUARD, encoding="utf-8")
        command = [sys.executable, "-I", "guard.py"]
        if network_namespace_available():
            command = ["unshare", *_UNSHARE, "--", *command]
        return _execute(command, limits, cwd=workdir, label="weak")


@functools.cache
def _log_weak_once(detail: str) -> None:
    """Log the downgrade once per process (the warning below repeats per call site)."""
    log.warning("model-written code runs with weak isolation: %s", detail)


def run_python(code: str, limits: SandboxLimits | None = None) -> ExecResult:
    """Execute `code` as `__main__` in the sandbox and report how it ended.

    Raises SandboxUnavailableError when bwrap cannot isolate and weak isolation was not opted in to."""
    limits = limits or SandboxLimits()
    chosen = isolation(limits)
    if chosen.level == "none":
        raise SandboxUnavailableError(chosen.detail)
    if chosen.level == "weak":
        _log_weak_once(chosen.detail)
        warnings.warn(f"sandbox: weak isolation in use ({chosen.detail})", WeakIsolationWarning, stacklevel=2)
        return _run_weak(code, limits)
    binary = _bwrap_binary()
    assert binary is not None
    return _run_bwrap(binary, code, limits)
