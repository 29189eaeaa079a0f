"""The run directory: append-only JSONL per stage, a config snapshot and a manifest.

Layout of `outputs/<run>/`: `config.yaml` (no secrets; the snapshots it replaced in `config.history.jsonl`),
`<stage>.jsonl` (records), `<stage>.failures.jsonl`, `ledger.jsonl` (one line per LLM call), `manifest.json`
(stage status and counts), plus plots and exports.

A stage marked `running` in the manifest also names the process (`pid`, `host`) doing it, so a reader can tell a
live stage from one whose process died (`is_alive`); a stage's `records_written` is always the number of records
in its file (what this session added is `records_new`), so the manifest never disagrees with the files.

Records are only ever appended, one JSON line each, flushed per line; a line cut short by a kill is ignored on read
and trimmed before the next append, so a resumed run never trusts half-written data.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

from glan_utils.core.jsonl import JsonlWriter, iter_jsonl, iter_jsonl_offsets
from glan_utils.core.paths import CONFIG, CONFIG_HISTORY, MANIFEST, ensure_writable_dir, replace_file
from glan_utils.core.records import Failure, Record, record_type, utc_now

R = TypeVar("R", bound=Record)
_HEAD = 4096  # bytes of the records file fingerprinted, so a replaced file is indexed afresh


class DoneIndex:
    """Task ids with records, in SQLite; `id in index` is one indexed lookup. The records file stays the truth:
    the index is derived from it (and rebuilt when the file was replaced or cut), never the other way round.

    It also indexes record ids and lists the byte offset of every line that repeats an earlier record's id (the
    same record appended twice, e.g. by two processes running one stage at once), so reading the records once
    each holds no set of every id either.
    """

    def __init__(self, records: Path, path: Path) -> None:
        self.records = records
        self.indexed_bytes = 0
        self._ids: set[str] | None = None
        self._record_ids: set[str] = set()
        self._repeats: set[int] = set()
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            # an index from before record ids were indexed is read again from the start
            older = self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'seen'").fetchone() is not None
            older &= self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'records'").fetchone() is None
            self._db.executescript(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;"
                "CREATE TABLE IF NOT EXISTS done (id TEXT PRIMARY KEY) WITHOUT ROWID;"
                "CREATE TABLE IF NOT EXISTS records (id TEXT PRIMARY KEY) WITHOUT ROWID;"
                "CREATE TABLE IF NOT EXISTS repeats (offset INTEGER PRIMARY KEY);"
                "CREATE TABLE IF NOT EXISTS seen (offset INTEGER, head TEXT);"
            )
            if older:
                self._db.execute("DELETE FROM seen")
            self._catch_up()
        except sqlite3.Error:  # e.g. a full disk: the index only saves memory, so fall back to sets in memory
            self._index_in_memory()

    def _index_in_memory(self) -> None:
        self._ids = set()
        self.indexed_bytes = self.records.stat().st_size if self.records.exists() else 0
        for offset, row in iter_jsonl_offsets(self.records):
            if offset >= self.indexed_bytes:  # appended meanwhile: a reader checks it as it comes
                break
            self._ids.add(row.get("task_id", ""))
            if row["id"] in self._record_ids:
                self._repeats.add(offset)
            else:
                self._record_ids.add(row["id"])

    def _catch_up(self) -> None:
        if not self.records.exists():
            self._db.executescript("DELETE FROM done; DELETE FROM records; DELETE FROM repeats; DELETE FROM seen;")
            return
        with self.records.open("rb") as handle:
            head = hashlib.sha256(handle.read(_HEAD)).hexdigest()
            row = self._db.execute("SELECT offset, head FROM seen").fetchone()
            size = os.fstat(handle.fileno()).st_size
            offset = row[0] if row and row[1] == head and row[0] <= size else 0
            handle.seek(offset)
            self._db.execute("BEGIN")
            if offset == 0:
                for table in ("done", "records", "repeats"):
                    self._db.execute(f"DELETE FROM {table}")
            for line in handle:
                if not line.endswith(b"\n"):  # a torn tail: indexed once it is complete (or trimmed)
                    break
                if line.strip():
                    record = json.loads(line)
                    self._db.execute("INSERT OR IGNORE INTO done VALUES (?)", (record.get("task_id", ""),))
                    if not self._db.execute("INSERT OR IGNORE INTO records VALUES (?)", (record["id"],)).rowcount:
                        self._db.execute("INSERT INTO repeats VALUES (?)", (offset,))
                offset += len(line)
            self._db.execute("DELETE FROM seen")
            self._db.execute("INSERT INTO seen VALUES (?, ?)", (offset, head))
            self._db.execute("COMMIT")
        self.indexed_bytes = offset

    def __contains__(self, task_id: object) -> bool:
        if self._ids is not None:
            return task_id in self._ids
        return self._db.execute("SELECT 1 FROM done WHERE id = ?", (task_id,)).fetchone() is not None

    def __len__(self) -> int:
        return len(self._ids) if self._ids is not None else self._db.execute("SELECT COUNT(*) FROM done").fetchone()[0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids) if self._ids is not None else (row[0] for row in self._db.execute("SELECT id FROM done"))

    def has_record(self, record_id: str) -> bool:
        """Whether a line the index has read holds this record id."""
        if self._ids is not None:
            return record_id in self._record_ids
        return self._db.execute("SELECT 1 FROM records WHERE id = ?", (record_id,)).fetchone() is not None

    def repeats(self) -> set[int]:
        """Byte offsets of the indexed lines whose record id an earlier line already has (usually none)."""
        if self._ids is not None:
            return self._repeats
        return {row[0] for row in self._db.execute("SELECT offset FROM repeats")}


class RunStore:
    """Reads and appends the records of one run. Cheap to construct; holds no records in memory."""

    def __init__(self, run_dir: str | Path) -> None:
        self.root = ensure_writable_dir(Path(run_dir))

    def path(self, name: str) -> Path:
        return self.root / name

    def records_path(self, stage: str) -> Path:
        return self.root / f"{stage}.jsonl"

    def failures_path(self, stage: str) -> Path:
        return self.root / f"{stage}.failures.jsonl"

    def iter_records(self, stage: str, model: type[R] | None = None) -> Iterator[R]:
        """Stream a stage's records as pydantic models, first occurrence of each id only.

        Repeated lines are skipped by the offsets the stage's index lists, so memory stays flat however many
        records there are; only lines appended while this reads are checked one by one."""
        cls = model or record_type(stage)
        index = self.done_task_ids(stage)
        repeats, tail = index.repeats(), set()
        for offset, row in iter_jsonl_offsets(self.records_path(stage)):
            if offset < index.indexed_bytes:
                if offset in repeats:
                    continue
            elif row["id"] in tail or index.has_record(row["id"]):
                continue
            else:
                tail.add(row["id"])
            yield cls.model_validate(row)  # type: ignore[misc]

    def iter_failures(self, stage: str) -> Iterator[Failure]:
        for row in iter_jsonl(self.failures_path(stage)):
            yield Failure.model_validate(row)

    def done_task_ids(self, stage: str) -> DoneIndex:
        """Task ids that already produced records: the work a resumed stage skips (`task.id in done`).

        An on-disk index beside the records file, brought up to date with the lines appended since it last
        looked, so resuming a 10M-task stage holds no set of 10M ids and re-reads nothing it has indexed.
        """
        return DoneIndex(self.records_path(stage), self.root / f".{stage}.done.idx")

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

    def write_config(self, snapshot: dict[str, Any], note: str | None = None) -> None:
        """Write `config.yaml`; the snapshot it replaces (when different) is appended to `config.history.jsonl`
        with the time and `note`, so a run's earlier settings are never lost."""
        text = yaml.safe_dump(snapshot, sort_keys=False, allow_unicode=True)
        path = self.path(CONFIG)
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old is not None and old != text:
            with JsonlWriter(self.path(CONFIG_HISTORY)) as out:
                out.write({"replaced_at": utc_now().isoformat(), "note": note, "config": yaml.safe_load(old)})
        self._atomic_write(CONFIG, text)

    def read_config(self) -> dict[str, Any]:
        path = self.path(CONFIG)
        return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.exists() else {}

    def read_manifest(self) -> dict[str, Any]:
        path = self.path(MANIFEST)
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"stages": {}}

    def has_records(self, stage: str) -> bool:
        """Whether a stage's records file holds anything (its size only: cheap at any size)."""
        path = self.records_path(stage)
        return path.exists() and path.stat().st_size > 0

    def line_count(self, stage: str) -> int:
        """Complete lines in a stage's records file (a torn last line has no newline, so is not counted); counts
        bytes without parsing, so it stays cheap at a million records."""
        path = self.records_path(stage)
        if not path.exists():
            return 0
        with path.open("rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))

    def update_manifest(self, stage: str, **info: Any) -> None:
        """Record a stage's status/counts; written atomically so a kill never leaves a torn manifest.

        `running` also records who runs it (pid, host), any later status drops them; `records_written` is replaced
        by the file's own count.
        """
        if info.get("status") == "running":
            info.update(pid=os.getpid(), host=socket.gethostname())
        if "records_written" in info and self.records_path(stage).exists():
            info["records_new"] = info["records_written"]
            info["records_written"] = self.line_count(stage)
        manifest = self.read_manifest()
        entry = manifest.setdefault("stages", {}).setdefault(stage, {})
        if info.get("status") not in (None, "running"):
            entry.pop("pid", None), entry.pop("host", None)  # only a running stage has a process to check
        entry.update(info)
        self._atomic_write(MANIFEST, json.dumps(manifest, indent=2, default=str))

    def forget(self, names: Iterable[str]) -> None:
        """Drop these stages' and notebooks' entries from the manifest (their records were moved aside)."""
        manifest = self.read_manifest()
        for name in names:
            manifest.get("stages", {}).pop(name, None)
        self._atomic_write(MANIFEST, json.dumps(manifest, indent=2, default=str))

    def interrupt_running(self, reason: str) -> list[str]:
        """Mark every stage still `running` as `interrupted` (its process is gone); returns their names."""
        stages = [
            name for name, info in self.read_manifest().get("stages", {}).items() if info.get("status") == "running"
        ]
        for name in stages:
            self.update_manifest(name, status="interrupted", error=reason)
        return stages

    def _atomic_write(self, name: str, text: str) -> None:
        replace_file(self.path(name), text)


def is_alive(info: dict[str, Any]) -> bool:
    """Whether the process a manifest entry names still runs; unknown (another host, no pid) counts as alive."""
    pid, host = info.get("pid"), info.get("host")
    if not pid or host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
