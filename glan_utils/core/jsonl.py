"""Append-only JSON lines: every line written in one unbuffered write, a line torn by a kill ignored on read and
trimmed before the next append. The run store, the ledger and the data set all keep their records this way."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from glan_utils.core.errors import StoreError

_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)  # built once: json.dumps(**kw) builds one per call


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield complete JSON lines; a torn last line (from a kill mid-write) is skipped, never half-parsed."""
    return (row for _, row in iter_jsonl_offsets(path))


def iter_jsonl_offsets(path: Path, start: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
    """(byte offset, object) of every complete JSON line from `start` on, so a line can be named by its offset."""
    if not path.exists():
        return
    with path.open("rb") as handle:
        offset = handle.seek(start)
        for line in handle:
            if not line.endswith(b"\n"):
                return
            if line.strip():
                yield offset, json.loads(line)
            offset += len(line)


def _trim_torn_tail(path: Path) -> None:
    """Cut a trailing partial line so the next append starts on a clean line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        size = handle.seek(0, os.SEEK_END)
        pos = size
        while pos > 0:
            step = min(4096, pos)
            pos -= step
            handle.seek(pos)
            chunk = handle.read(step)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                handle.truncate(pos + cut + 1)
                return
        handle.truncate(0)


class JsonlWriter:
    """Appends JSON lines, each in one unbuffered write, so everything written before a kill survives it.

    `write(obj, defer=True)` holds a line back until `flush_every` such lines have gathered, the next plain write
    or `close`, then writes them all at once (in order, before the plain line): for lines a kill may lose, such as
    cache-hit ledger lines, which cost nothing. A write that fails (disk full, read-only file system) is cut back
    off the file and raised as a StoreError, so no torn line is left for a later append to glue onto.
    """

    def __init__(self, path: Path, flush_every: int = 512) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _trim_torn_tail(path)
            self._handle = path.open("ab", buffering=0)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None
        self.path = path
        self.flush_every = flush_every
        self._pending: list[str] = []

    def write(self, obj: dict[str, Any], *, defer: bool = False) -> None:
        self._pending.append(_ENCODER.encode(obj))
        if not defer or len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Write every held-back line now, in one write."""
        if not self._pending:
            return
        data = memoryview(("\n".join(self._pending) + "\n").encode("utf-8"))
        self._pending.clear()
        start = os.fstat(self._handle.fileno()).st_size
        try:
            while data:
                data = data[self._handle.write(data) :]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._handle.fileno(), start)
            raise StoreError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._handle.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
