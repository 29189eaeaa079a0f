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


def test_a_notebooks_saved_progress_bar_reads_the_final_count(tmp_path):
    """An executed notebook keeps the bar's text as well as its widget: that text must end at 3/3, not at 0%."""
    import nbformat
    import papermill

    source = nbformat.v4.new_notebook()
    source.cells = [
        nbformat.v4.new_code_cell(
            "import asyncio\n"
            "from dataclasses import dataclass\n"
            "from glan_utils.core.records import TaxonomyNode\n"
            "from glan_utils.runs.stage import run_stage\n"
            "from glan_utils.runs.store import RunStore\n"
            "@dataclass(frozen=True)\n"
            "class Job:\n"
            "    id: str\n"
            "async def work(job):\n"
            "    await asyncio.sleep(0.05)\n"
            "    return [TaxonomyNode(name=job.id, level='field')]\n"
            f"await run_stage(RunStore({str(tmp_path / 'run')!r}), 'demo', [Job(f't{{i}}') for i in range(3)], work, "
            "concurrency=1, total=3)"
        )
    ]
    nbformat.write(source, tmp_path / "bar.ipynb")
    papermill.execute_notebook(
        tmp_path / "bar.ipynb", tmp_path / "out.ipynb", kernel_name="python3", progress_bar=False, log_output=False
    )
    outputs = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs
    bars = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(bars) == 1, outputs  # one bar, updated in place
    text = bars[0]["data"]["text/plain"]
    assert "100%" in text and "3/3" in text, text
