"""run_stage: resume by task id, failures kept with reasons, bounded window."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from glan_utils.core.records import Failure, TaxonomyNode
from glan_utils.runs.stage import run_stage
from glan_utils.runs.store import RunStore


@dataclass(frozen=True)
class Job:
    id: str
    name: str


def jobs(n: int):
    return (Job(id=f"t{i}", name=f"n{i}") for i in range(n))


async def test_resume_skips_done_tasks_and_retries_failures(tmp_path):
    store = RunStore(tmp_path)
    calls: list[str] = []
    attempts = {"t3": 0}

    async def work(job: Job):
        calls.append(job.id)
        if job.id == "t3":
            attempts["t3"] += 1
        if job.id == "t3" and attempts["t3"] == 1:
            return Failure(task_id=job.id, stage="taxonomy", reason="schema mismatch: x", raw="{}")
        return [TaxonomyNode(name=job.name, level="field", path=[job.name])]

    first = await run_stage(store, "taxonomy", jobs(6), work, concurrency=2)
    assert (first.records, first.failed) == (5, 1)
    assert [f.reason for f in store.iter_failures("taxonomy")] == ["schema mismatch: x"]
    calls.clear()
    second = await run_stage(store, "taxonomy", jobs(6), work, concurrency=2)
    assert calls == ["t3"]
    assert (second.skipped, second.records) == (5, 1)
    assert store.count("taxonomy") == 6
    assert store.read_manifest()["stages"]["taxonomy"]["status"] == "complete"


async def test_in_flight_window_is_bounded(tmp_path):
    store = RunStore(tmp_path)
    live = peak = 0

    async def work(job: Job):
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        await asyncio.sleep(0.01)
        live -= 1
        return []

    await run_stage(store, "taxonomy", jobs(50), work, concurrency=3)
    assert peak <= 6


async def test_an_exception_stops_the_stage_but_keeps_written_records(tmp_path):
    store = RunStore(tmp_path)

    async def work(job: Job):
        if job.id == "t4":
            raise RuntimeError("endpoint said 401")
        await asyncio.sleep(0)
        return [TaxonomyNode(name=job.name, level="field", path=[job.name])]

    with pytest.raises(RuntimeError, match="401"):
        await run_stage(store, "taxonomy", jobs(10), work, concurrency=1)
    assert 1 <= store.count("taxonomy") <= 5  # stopped within the in-flight window, not all 9


async def test_a_cancelled_stage_is_recorded_interrupted_with_the_file_count(tmp_path):
    store = RunStore(tmp_path)
    started = asyncio.Event()

    async def work(job: Job):
        if job.id != "t0":
            started.set()
            await asyncio.sleep(60)  # still in flight when Ctrl-C arrives
        return [TaxonomyNode(name=job.name, level="field", path=[job.name])]

    stage = asyncio.create_task(run_stage(store, "taxonomy", jobs(4), work, concurrency=1))
    await started.wait()
    stage.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stage
    entry = store.read_manifest()["stages"]["taxonomy"]
    assert entry["status"] == "interrupted" and "pid" not in entry
    assert entry["records_written"] == store.line_count("taxonomy") == 1
