"""Run store: append-only, idempotent by id, and safe against a write torn by a kill."""

from __future__ import annotations

import os

import pytest

from glan_utils.core.errors import StoreError
from glan_utils.core.records import TaxonomyNode
from glan_utils.runs.store import RunStore


def node(name: str) -> TaxonomyNode:
    return TaxonomyNode(name=name, level="field", path=[name])


def test_append_is_idempotent_by_id(tmp_path):
    store = RunStore(tmp_path / "run")
    assert store.append("taxonomy", [node("Math"), node("Physics")]) == 2
    assert store.append("taxonomy", [node("Math"), node("Biology")]) == 1
    assert [n.name for n in store.iter_records("taxonomy")] == ["Math", "Physics", "Biology"]


def test_ids_are_stable_content_hashes():
    assert node("Math").id == node("Math").id != node("math ").id


def test_torn_last_line_is_ignored_and_trimmed(tmp_path):
    store = RunStore(tmp_path / "run")
    store.append("taxonomy", [node("Math")])
    with store.records_path("taxonomy").open("a") as handle:
        handle.write('{"id": "abc", "name": "Phys')  # a kill in the middle of a write
    assert store.count("taxonomy") == 1
    store.append("taxonomy", [node("Physics")])
    assert [n.name for n in store.iter_records("taxonomy")] == ["Math", "Physics"]


def test_manifest_updates_merge(tmp_path):
    store = RunStore(tmp_path / "run")
    store.update_manifest("subjects", status="running")
    store.update_manifest("subjects", status="complete", records_written=3)
    assert store.read_manifest()["stages"]["subjects"] == {"status": "complete", "records_written": 3}


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_read_only_dir_is_a_clear_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    with pytest.raises(StoreError, match="not writable"):
        RunStore(locked)


def test_deferred_lines_flush_before_a_plain_line_and_on_close(tmp_path):
    """Cache-hit ledger lines may be held back; a paid (plain) line writes them first, in order."""
    from glan_utils.core.jsonl import JsonlWriter, iter_jsonl

    path = tmp_path / "l.jsonl"
    writer = JsonlWriter(path)
    writer.write({"i": 0}, defer=True)
    assert list(iter_jsonl(path)) == []
    writer.write({"i": 1})
    assert [r["i"] for r in iter_jsonl(path)] == [0, 1]
    writer.write({"i": 2}, defer=True)
    writer.close()
    assert [r["i"] for r in iter_jsonl(path)] == [0, 1, 2]


def test_manifest_counts_equal_the_records_file(tmp_path):
    """A resumed stage writes only its new records; the manifest still counts what the file holds."""
    store = RunStore(tmp_path / "run")
    store.append("taxonomy", [node("Math"), node("Physics"), node("Art")])
    store.update_manifest("taxonomy", status="running")
    assert store.read_manifest()["stages"]["taxonomy"]["pid"] == os.getpid()
    store.update_manifest("taxonomy", status="complete", records_written=1)
    entry = store.read_manifest()["stages"]["taxonomy"]
    assert (entry["records_written"], entry["records_new"]) == (3, 1) and "pid" not in entry
