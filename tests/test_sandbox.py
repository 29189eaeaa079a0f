"""The code sandbox against hostile programs: every check looks at the HOST afterwards, not at the child's word.

Model-written code runs as if it were an attacker: it writes outside its work dir, reads planted secrets, lists
home directories, opens sockets, shells out through ctypes (invisible to audit hooks), forks, allocates, loops and
floods stdout. Each test then inspects the host side: files that must not exist, files that must survive, a
listening socket that must have seen nobody, host processes that must be gone, the parent's own memory.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from glan_utils.core import sandbox
from glan_utils.core.errors import SandboxUnavailableError, SetupError
from glan_utils.core.sandbox import SandboxLimits, WeakIsolationWarning, isolation, run_python
from glan_utils.evaluation.code_eval import humaneval_program, mbpp_program, pass_at_1

SECRET = "sk-planted-0badc0ffee0badc0ffee0badc0ffee00"

# Skipped only where bwrap is not installed at all (`make test` installs it). Where it is installed but does not
# work, these tests fail with the reason instead of hiding a broken sandbox behind skips.
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")


def _run(code: str, limits: SandboxLimits | None = None) -> sandbox.ExecResult:
    return run_python(textwrap.dedent(code), limits)


def _processes_named(comm: str) -> list[int]:
    """Host pids whose command name is `comm` (set by the hostile program with prctl, so other work on the
    machine cannot disturb the count)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


_NAME_ME = """
import ctypes
def name_me(comm):
    ctypes.CDLL(None).prctl(15, comm.encode(), 0, 0, 0)  # PR_SET_NAME: visible in the host's /proc/<pid>/comm
"""


# ------------------------------------------------------------------------------------ correct code still works


@needs_bwrap
def test_clean_program_passes_and_failing_assert_fails() -> None:
    ok = _run("assert sum([1, 2]) == 3\nprint('ok')")
    assert ok.passed and ok.stdout == "ok\n" and ok.isolation == "bwrap"
    failed = _run("assert 1 == 2")
    assert not failed.passed and "AssertionError" in failed.stderr


@needs_bwrap
def test_humaneval_style_program_with_stdlib_passes() -> None:
    program = """
        from typing import List
        import collections, functools, heapq, itertools, math, re, string

        def has_close_elements(numbers: List[float], threshold: float) -> bool:
            return any(abs(a - b) < threshold for a, b in itertools.combinations(numbers, 2))

        def check(candidate):
            assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) is True
            assert candidate([1.0, 2.0, 3.0], 0.5) is False
            assert heapq.nsmallest(2, [3, 1, 2]) == [1, 2] and math.gcd(12, 18) == 6
            assert re.sub(r"\\s+", " ", "a  b") == "a b" and collections.Counter("aab")["a"] == 2
            assert functools.reduce(lambda x, y: x * y, range(1, 6)) == 120 and string.digits == "0123456789"

        check(has_close_elements)
    """
    result = _run(program)
    assert result.passed, result.stderr


@needs_bwrap
def test_code_eval_scores_right_and_wrong_completions() -> None:
    human = {
        "prompt": 'def add(a: int, b: int) -> int:\n    """Sum of a and b."""\n',
        "entry_point": "add",
        "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
    }
    assert pass_at_1(humaneval_program(human, "    return a + b\n")) == 1.0
    assert pass_at_1(humaneval_program(human, "```python\ndef add(a, b):\n    return a + b\n```")) == 1.0
    assert pass_at_1(humaneval_program(human, "    return a - b\n")) == 0.0
    mbpp = {"test_list": ["assert square(3) == 9", "assert square(0) == 0"], "test_setup_code": ""}
    assert pass_at_1(mbpp_program(mbpp, "def square(x):\n    return x * x")) == 1.0
    assert pass_at_1(mbpp_program(mbpp, "def square(x):\n    return x + x")) == 0.0


# ---------------------------------------------------------------------------------------- filesystem probes


@needs_bwrap
def test_writes_outside_the_work_dir_never_reach_the_host(tmp_path: Path) -> None:
    targets = [tmp_path / "pwned.txt", Path(f"/tmp/glan-pwned-{uuid.uuid4().hex}"), Path(sys.base_prefix) / "pwned"]
    code = f"""
        import os
        for path in {[str(t) for t in targets]!r}:
            try:
                with open(path, "w") as handle:
                    handle.write("pwned")
                print("WROTE", path)
            except OSError as exc:
                print("DENIED", path, type(exc).__name__)
        open("inside.txt", "w").write("fine")  # the private work dir is writable
        print("CWD", os.getcwd(), open("inside.txt").read())
    """
    result = _run(code)
    assert result.passed, result.stderr
    assert "CWD /tmp/glan-sandbox fine" in result.stdout
    for target in targets:
        assert not target.exists(), f"{target} was written on the host"


@needs_bwrap
def test_planted_secret_files_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    caller = tmp_path / "caller"
    caller.mkdir()
    planted = [tmp_path / ".env", caller / ".env"]
    for path in planted:
        path.write_text(f"OPENAI_API_KEY={SECRET}\n")
    monkeypatch.chdir(caller)
    repo_file = Path(__file__).resolve()
    code = f"""
        for path in {[*map(str, planted), ".env", str(repo_file)]!r}:
            try:
                print("READ", path, open(path).read())
            except OSError as exc:
                print("DENIED", path, type(exc).__name__)
    """
    result = _run(code)
    assert SECRET not in result.stdout + result.stderr
    assert "READ" not in result.stdout and result.stdout.count("DENIED") == 4
    assert all(path.read_text() == f"OPENAI_API_KEY={SECRET}\n" for path in planted)


@needs_bwrap
def test_home_directories_cannot_be_listed() -> None:
    homes = sorted({"/root", os.path.expanduser("~")})
    code = f"""
        import json, os
        seen = {{}}
        for home in {homes!r}:
            try:
                seen[home] = os.listdir(home)
            except OSError as exc:
                seen[home] = type(exc).__name__
        print(json.dumps(seen))
    """
    result = _run(code)
    assert result.passed, result.stderr
    seen = json.loads(result.stdout)
    # what an exposed path to the interpreter could legitimately show: the next component of the prefix
    allowed = {Path(p).relative_to(home).parts[0] for home in homes for p in (sys.base_prefix,) if p.startswith(home)}
    for home, listing in seen.items():
        assert isinstance(listing, str) or set(listing) <= allowed, f"{home} exposed {listing}"
    host_entries = {name for home in homes if os.path.isdir(home) for name in os.listdir(home)} - allowed
    assert host_entries, "the host home directories hold nothing else, so this test could not fail"


@needs_bwrap
def test_deleting_files_in_the_callers_directory_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    monkeypatch.chdir(tmp_path)
    code = f"""
        import os, shutil
        for action in (lambda: os.remove({str(victim)!r}), lambda: shutil.rmtree({str(tmp_path)!r}),
                       lambda: os.remove("victim.txt")):
            try:
                action()
                print("DELETED")
            except OSError as exc:
                print("DENIED", type(exc).__name__)
    """
    result = _run(code)
    assert "DELETED" not in result.stdout
    assert victim.read_text() == "keep me"


@needs_bwrap
def test_ctypes_shell_and_raw_syscalls_cannot_touch_the_host(tmp_path: Path) -> None:
    """Audit hooks never see ctypes: this is why bwrap is needed at all."""
    by_shell, by_open = tmp_path / "by-shell", Path(f"/tmp/glan-pwned-open-{uuid.uuid4().hex}")
    code = f"""
        import ctypes, os
        libc = ctypes.CDLL(None)
        print("system ->", libc.system({f"touch {by_shell}".encode()!r}))
        fd = libc.open({str(by_open).encode()!r}, os.O_CREAT | os.O_WRONLY, 0o644)
        print("open ->", fd)
        if fd >= 0:
            libc.write(fd, b"pwned", 5)
    """
    result = _run(code)
    assert "system ->" in result.stdout, result.stderr  # the program really ran its attack
    assert not by_shell.exists() and not by_open.exists()


# ------------------------------------------------------------------------------------------- network probe


@needs_bwrap
def test_network_cannot_reach_a_loopback_server_on_the_host() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.5)
    port = server.getsockname()[1]
    code = f"""
        import socket
        print("interfaces", [name for _, name in socket.if_nameindex()])
        for address in [("127.0.0.1", {port}), ("10.255.255.1", 80)]:
            try:
                socket.create_connection(address, timeout=2).sendall(b"hello")
                print("CONNECTED", address)
            except OSError as exc:
                print("REFUSED", address, type(exc).__name__)
    """
    try:
        result = _run(code)
        with pytest.raises(TimeoutError):
            server.accept()  # nothing knocked
    finally:
        server.close()
    assert "interfaces ['lo']" in result.stdout, result.stdout + result.stderr
    assert "CONNECTED" not in result.stdout and result.stdout.count("REFUSED") == 2


# ----------------------------------------------------------------------------------- resource exhaustion


@needs_bwrap
def test_fork_bomb_is_bounded_and_cleaned_up() -> None:
    limits = SandboxLimits(max_processes=16, timeout_s=20)
    code = (
        _NAME_ME
        + """
import os, time
children = 0
for _ in range(400):  # bounded, so a broken limit fails the test instead of the machine
    try:
        pid = os.fork()
    except OSError as exc:
        print("STOPPED after", children, type(exc).__name__)
        break
    if pid == 0:
        name_me("glanforkbomb")
        time.sleep(30)
        os._exit(0)
    children += 1
else:
    print("NOT STOPPED", children)
time.sleep(1.5)  # keep the children alive while the host counts them
"""
    )
    done: list[sandbox.ExecResult] = []
    worker = threading.Thread(target=lambda: done.append(run_python(code, limits)))
    start, peak = time.monotonic(), 0
    worker.start()
    while worker.is_alive():
        peak = max(peak, len(_processes_named("glanforkbomb")))
        time.sleep(0.05)
    worker.join()
    result = done[0]
    assert "STOPPED after" in result.stdout, result.stdout + result.stderr
    assert int(result.stdout.split()[2]) < limits.max_processes
    assert 0 < peak < limits.max_processes  # the host saw them, and never more than the bound
    assert time.monotonic() - start < 15
    time.sleep(0.5)
    assert _processes_named("glanforkbomb") == []  # the sandbox took its children with it


@needs_bwrap
def test_memory_bomb_hits_the_limit_without_growing_past_it() -> None:
    """Measured from a fresh driver process, whose RUSAGE_CHILDREN peak is the sandbox's alone."""
    bomb = "chunks = []\nwhile True:\n    chunks.append(bytearray(32 * 1024 * 1024))\n"
    driver = (
        "import resource, sys; from glan_utils.core.sandbox import SandboxLimits, run_python; "
        "r = run_python(sys.argv[1], SandboxLimits(memory_mb=256)); "
        "print(r.passed, 'MemoryError' in r.stderr, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run(
        [sys.executable, "-c", driver, bomb], capture_output=True, text=True, timeout=60, check=True, cwd="/"
    )
    passed, memory_error, peak_kb = done.stdout.split()
    assert passed == "False" and memory_error == "True", done.stdout + done.stderr
    assert int(peak_kb) < 300 * 1024
    assert "MemoryError" in _run("x = bytearray(4 * 1024**3)", SandboxLimits(memory_mb=512)).stderr


@needs_bwrap
def test_infinite_loop_times_out_and_leaves_no_process() -> None:
    code = (
        _NAME_ME
        + """
import os
if os.fork() == 0:
    name_me("glanlinger")  # a child that would outlive its parent
while True:
    pass
"""
    )
    start = time.monotonic()
    result = run_python(code, SandboxLimits(timeout_s=1.0))
    assert result.timed_out and not result.passed
    assert time.monotonic() - start < 8
    time.sleep(0.3)
    assert _processes_named("glanlinger") == []


@needs_bwrap
def test_stdout_flood_is_capped_and_killed() -> None:
    start = time.monotonic()
    flood = run_python("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", SandboxLimits(max_output_mb=2))
    assert flood.output_truncated and not flood.passed and not flood.timed_out
    assert len(flood.stdout) <= 4000 and "output exceeded 2 MB" in flood.stderr
    assert time.monotonic() - start < 8


@needs_bwrap
def test_large_output_does_not_grow_the_parent() -> None:
    """300 MB through the pipe (allowed here) while the parent keeps a bounded tail: its own peak RSS stays small."""
    program = "import sys\nblock = 'y' * 65536\nfor _ in range(4800):\n    sys.stdout.write(block)\nprint('END')\n"
    # VmHWM is this process's own peak RSS; ru_maxrss would carry over the (large) pytest process it was forked from
    driver = (
        "import re, sys; from glan_utils.core.sandbox import SandboxLimits, run_python; "
        "r = run_python(sys.argv[1], SandboxLimits(max_output_mb=1024, timeout_s=60)); "
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
        "print(r.passed, r.stdout.endswith('END\\n'), hwm)"
    )
    done = subprocess.run(
        [sys.executable, "-c", driver, program], capture_output=True, text=True, timeout=120, check=True, cwd="/"
    )
    passed, ends, parent_peak_kb = done.stdout.split()
    assert passed == "True" and ends == "True", done.stdout + done.stderr
    assert int(parent_peak_kb) < 150 * 1024


# ------------------------------------------------------------------------------------------ no secrets


@needs_bwrap
def test_environment_holds_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    result = _run("import os\nprint(sorted(os.environ))\nprint(os.getuid(), os.getcwd())")
    assert SECRET not in result.stdout and "OPENAI_API_KEY" not in result.stdout
    assert f"{sandbox.SANDBOX_UID} /tmp/glan-sandbox" in result.stdout


# ---------------------------------------------------------------------------- no bwrap: refuse, or opt in


@pytest.fixture
def no_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH on which neither bwrap nor unshare exists."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv(sandbox.WEAK_ENV, raising=False)


def test_without_bwrap_running_is_refused_with_one_line(no_bwrap: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isolation().level == "none"
    for flag, env in ((False, None), (True, None), (False, "1"), (True, "0")):
        if env is None:
            monkeypatch.delenv(sandbox.WEAK_ENV, raising=False)
        else:
            monkeypatch.setenv(sandbox.WEAK_ENV, env)
        with pytest.raises(SandboxUnavailableError) as exc:
            run_python("print('should not run')", SandboxLimits(allow_weak_isolation=flag))
        message = str(exc.value)
        assert "\n" not in message and "bubblewrap (bwrap) is not installed" in message
        assert "install_sandbox.sh" in message and f"{sandbox.WEAK_ENV}=1" in message
        assert isinstance(exc.value, SetupError)  # the CLI prints SetupErrors as one line


def test_a_bwrap_that_fails_its_probe_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    monkeypatch.delenv(sandbox.WEAK_ENV, raising=False)
    assert isolation().level == "none"
    with pytest.raises(SandboxUnavailableError, match="No permissions to create new namespace"):
        run_python("print(1)")


def test_opt_in_runs_weakly_and_warns(no_bwrap: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sandbox.WEAK_ENV, "1")
    limits = SandboxLimits(allow_weak_isolation=True)
    assert isolation(limits).level == "weak" and "NOT a security boundary" in isolation(limits).detail
    with pytest.warns(WeakIsolationWarning, match="weak isolation"):
        ok = run_python("print(sum(range(4)))", limits)
    assert ok.passed and ok.stdout == "6\n" and ok.isolation == "weak"
    with pytest.warns(WeakIsolationWarning):
        blocked = run_python("import subprocess\nsubprocess.run(['true'])", limits)
    assert not blocked.passed and "not allowed" in blocked.stderr  # the audit hook is all it has


@needs_bwrap
def test_isolation_names_bwrap_when_it_works() -> None:
    chosen = isolation()
    assert chosen.level == "bwrap" and "bubblewrap" in chosen.detail and "no network" in chosen.detail


def test_closing_its_pipes_does_not_escape_the_timeout(no_bwrap: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Weak path without unshare, where the program is the pipes' only holder (under bwrap, bwrap holds them too):
    closing stdout and stderr must not end the supervision before the timeout."""
    monkeypatch.setenv(sandbox.WEAK_ENV, "1")
    start = time.monotonic()
    with pytest.warns(WeakIsolationWarning):
        result = run_python(
            "import os\nos.close(1)\nos.close(2)\nwhile True:\n    pass\n",
            SandboxLimits(timeout_s=1.0, allow_weak_isolation=True),
        )
    assert result.timed_out and not result.passed
    assert time.monotonic() - start < 4
