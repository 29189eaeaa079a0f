"""`glan run`'s progress inside a notebook: every few seconds one line per running stage (tasks done of the
total, failures, dollars spent in this notebook), read from the run's manifest and ledger.

A kernel's own progress bars go to the notebook, not to the terminal that started `glan run`; running stages
write their counts to the manifest every `runs.stage.PROGRESS_S`, and the ledger gains a line per call, so the
ticker reads only what is new: the manifest and the ledger's lines since the notebook started.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from types import TracebackType

from glan_utils.core.paths import LEDGER
from glan_utils.runs.store import RunStore


class Ticker:
    """A thread that echoes the running stages' progress every `every` seconds (0: never) while in a `with`."""

    def __init__(self, store: RunStore, notebook: str, echo: Callable[[str], None], every: float) -> None:
        self.store, self.notebook, self.echo, self.every = store, notebook, echo, every
        self.cost = 0.0
        ledger = store.path(LEDGER)
        self._offset = ledger.stat().st_size if ledger.exists() else 0
        self._started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="glan-ticker", daemon=True)

    def __enter__(self) -> Ticker:
        if self.every > 0:
            self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.echo(self.line())

    def _spent(self) -> float:
        """Dollars of the ledger lines appended since the last look (a torn last line waits for the next)."""
        path = self.store.path(LEDGER)
        if not path.exists():
            return self.cost
        with path.open("rb") as handle:
            handle.seek(self._offset)
            for line in handle:
                if not line.endswith(b"\n"):
                    break
                self._offset += len(line)
                self.cost += json.loads(line).get("cost_usd") or 0.0
        return self.cost

    def line(self) -> str:
        """'04_questions: questions 40/100 tasks, 2 failed; $0.0123 in this notebook; 35 s'."""
        stages = self.store.read_manifest().get("stages", {})
        running = [
            f"{name} {p['done']:,}/{p['total']:,} tasks, {p['failed']:,} failed"
            if p.get("total")
            else f"{name} {p['done']:,} tasks, {p['failed']:,} failed"
            for name, info in stages.items()
            if info.get("status") == "running" and (p := info.get("progress"))
        ]
        doing = "; ".join(running) or "running"
        seconds = time.perf_counter() - self._started
        return f"{self.notebook}: {doing}; ${self._spent():,.4f} in this notebook; {seconds:.0f} s"
