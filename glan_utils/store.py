"""The run directory: append-only JSONL per stage, a config snapshot and a manifest.

Layout of `outputs/<run>/`: `config.yaml` (no secrets), `<stage>.jsonl` (records), `<stage>.failures.jsonl`,
`ledger.jsonl` (one line per LLM call), `manifest.json` (stage status and counts), plus plots and exports.

Records are only ever appended, one JSON line each, flushed per line; a line cut short by a kill is ignored on read
and trimmed before the next append, so a resumed run never trusts half-written data.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

from glan_utils.errors import StoreError
from glan_utils.records import RECORD_TYPES, Failure, Record

R = TypeVar("R", bound=Record)
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)  # built once: json.dumps(**kw) builds one per call


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield complete JSON lines; a torn last line (from a kill mid-write) is skipped, never half-parsed."""
    if not path.exists():
        return
    with path.open("rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                return
            if line.strip():
                yield json.loads(line)


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
                data = data[self._handle.write(data):]
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


class RunStore:
    """Reads and appends the records of one run. Cheap to construct; holds no records in memory."""

    def __init__(self, run_dir: str | Path) -> None:
        self.root = Path(run_dir)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create run directory {self.root}: {exc.strerror}") from None
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"run directory is not writable: {self.root}")

    def path(self, name: str) -> Path:
        return self.root / name

    def records_path(self, stage: str) -> Path:
        return self.root / f"{stage}.jsonl"

    def failures_path(self, stage: str) -> Path:
        return self.root / f"{stage}.failures.jsonl"

    def iter_records(self, stage: str, model: type[R] | None = None) -> Iterator[R]:
        """Stream a stage's records as pydantic models, first occurrence of each id only."""
        cls = model or RECORD_TYPES[stage]
        seen: set[str] = set()
        for row in iter_jsonl(self.records_path(stage)):
            if row["id"] not in seen:
                seen.add(row["id"])
                yield cls.model_validate(row)  # type: ignore[misc]

    def iter_failures(self, stage: str) -> Iterator[Failure]:
        for row in iter_jsonl(self.failures_path(stage)):
            yield Failure.model_validate(row)

    def done_task_ids(self, stage: str) -> set[str]:
        """Task ids that already produced records: the work a resumed stage skips."""
        return {row.get("task_id", "") for row in iter_jsonl(self.records_path(stage))}

    def count(self, stage: str) -> int:
        return sum(1 for _ in self.iter_records(stage))

    def writer(self, stage: str) -> JsonlWriter:
        return JsonlWriter(self.records_path(stage))

    def failure_writer(self, stage: str) -> JsonlWriter:
        return JsonlWriter(self.failures_path(stage))

    def append(self, stage: str, records: Iterable[Record]) -> int:
        """Append records whose id is not yet stored; returns how many were new."""
        known = {row["id"] for row in iter_jsonl(self.records_path(stage))}
        added = 0
        with self.writer(stage) as out:
            for record in records:
                if record.id not in known:
                    known.add(record.id)
                    out.write(record.model_dump(mode="json"))
                    added += 1
        return added

    def write_config(self, snapshot: dict[str, Any]) -> None:
        self._atomic_write("config.yaml", yaml.safe_dump(snapshot, sort_keys=False, allow_unicode=True))

    def read_config(self) -> dict[str, Any]:
        path = self.path("config.yaml")
        return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.exists() else {}

    def read_manifest(self) -> dict[str, Any]:
        path = self.path("manifest.json")
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"stages": {}}

    def update_manifest(self, stage: str, **info: Any) -> None:
        """Record a stage's status/counts; written atomically so a kill never leaves a torn manifest."""
        manifest = self.read_manifest()
        manifest.setdefault("stages", {}).setdefault(stage, {}).update(info)
        self._atomic_write("manifest.json", json.dumps(manifest, indent=2, default=str))

    def _atomic_write(self, name: str, text: str) -> None:
        target = self.path(name)
        tmp = target.with_suffix(target.suffix + ".tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write {target}: {exc.strerror}") from None
