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
