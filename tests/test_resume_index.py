"""The on-disk index of done task ids that resume uses instead of a set of every id in memory."""

from __future__ import annotations

import json
from pathlib import Path

from glan_utils.runs.store import RunStore


def _append(path: Path, *task_ids: str, torn: str = "") -> None:
    with path.open("a", encoding="utf-8") as out:
        for task_id in task_ids:
            out.write(json.dumps({"id": f"r-{task_id}", "task_id": task_id}) + "\n")
        out.write(torn)


def test_the_index_catches_up_with_appended_lines_and_skips_a_torn_tail(tmp_path: Path):
    store = RunStore(tmp_path)
    assert "a" not in store.done_task_ids("demo") and len(store.done_task_ids("demo")) == 0
    _append(store.records_path("demo"), "a", "b", torn='{"id": "r-c", "task_')
    done = store.done_task_ids("demo")
    assert "a" in done and "b" in done and "c" not in done and not isinstance(done, set)
    path = store.records_path("demo")
    path.write_bytes(path.read_bytes()[: path.read_bytes().rindex(b"\n") + 1])  # the writer trims the torn tail
    _append(path, "c", "d")
    assert sorted(store.done_task_ids("demo")) == ["a", "b", "c", "d"]


def test_a_replaced_records_file_is_indexed_afresh(tmp_path: Path):
    store = RunStore(tmp_path)
    _append(store.records_path("demo"), "a", "b", "c")
    assert len(store.done_task_ids("demo")) == 3
    store.records_path("demo").unlink()
    _append(store.records_path("demo"), "x")
    assert sorted(store.done_task_ids("demo")) == ["x"]


def _names(store: RunStore) -> list[str]:
    return [record.name for record in store.iter_records("taxonomy")]


def _node(name: str) -> dict:
    from glan_utils.core.records import TaxonomyNode

    node = TaxonomyNode(name=name, level="field")
    return {**node.model_dump(mode="json"), "task_id": f"t-{name}"}


def test_a_record_appended_twice_is_read_once_without_a_set_of_every_id(tmp_path: Path, monkeypatch):
    """A repeated record (two processes ran one stage) is skipped by its offset in the index, also when it was
    appended after the index caught up, after an index from before record ids were indexed, and without SQLite."""
    import sqlite3

    import glan_utils.runs.store as store_module

    store = RunStore(tmp_path)
    path = store.records_path("taxonomy")
    lines = [json.dumps(_node(name)) + "\n" for name in ("Sciences", "Arts", "Sciences", "Law")]
    path.write_text("".join(lines), encoding="utf-8")
    assert _names(store) == ["Sciences", "Arts", "Law"]
    with path.open("a", encoding="utf-8") as out:  # appended once the index has read the file
        out.write(lines[1])
    assert _names(store) == ["Sciences", "Arts", "Law"]
    with sqlite3.connect(tmp_path / ".taxonomy.done.idx") as db:  # an index written before record ids were kept
        db.executescript("DROP TABLE records; DROP TABLE repeats;")
    assert _names(store) == ["Sciences", "Arts", "Law"]
    assert sorted(store.done_task_ids("taxonomy")) == ["t-Arts", "t-Law", "t-Sciences"]

    def broken(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store_module.sqlite3, "connect", broken)
    assert _names(store) == ["Sciences", "Arts", "Law"]  # the in-memory fallback reads them once too
