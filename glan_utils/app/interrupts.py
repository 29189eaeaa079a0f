"""Ctrl-C and SIGTERM during a batch run: interrupt the kernel as Jupyter's button does, then report once.

Kernels run in their own session, so a terminal's Ctrl-C reaches `glan` only. The first signal is passed to the
running kernel as SIGINT: its cell raises KeyboardInterrupt, a stage in progress records `interrupted`, papermill
saves the notebook and shuts the kernel down cleanly (no ZMQ tracebacks). A second signal stops at once.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Interrupted(RuntimeError):
    """Ctrl-C or SIGTERM stopped the run; the message names the stage, what is saved and how to resume."""

    def __init__(self, message: str, signal_name: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + signal.Signals[self.signal_name].value


def _live_kernels() -> list[int]:
    """Process ids of the kernels this process started (papermill runs one at a time)."""
    import psutil  # a dependency of ipykernel

    kernels = []
    for child in psutil.Process().children():
        try:
            if any("ipykernel" in part for part in child.cmdline()):
                kernels.append(child.pid)
        except psutil.Error:
            continue
    return kernels


def _interrupt_kernels() -> None:
    """Send SIGINT to each kernel's process group, as Jupyter's interrupt button does."""
    for pid in _live_kernels():
        try:
            os.killpg(pid, signal.SIGINT)
        except (ProcessLookupError, PermissionError):
            continue


@contextmanager
def catch_signals() -> Iterator[list[str]]:
    """Catch SIGINT/SIGTERM while notebooks run: the first interrupts the kernel (so the notebook and the run
    store end cleanly), a second raises KeyboardInterrupt at once. Yields the names of the signals received."""
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handle(signum: int, _frame: Any) -> None:
        received.append(signal.Signals(signum).name)
        if len(received) > 1:
            raise KeyboardInterrupt
        _interrupt_kernels()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
