"""Chaos: a ~2,000-call pipeline run against a server failing 20% of calls, every kind of fault, seeded.

The server runs as its own process, so its count is independent of the run's. Asserts what matters to a user
paying per call: the run completes, every planned unit of work is either a record (once) or a failure with its
reason, and the ledger's paid-call count equals what the server received.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from support.reliability import (
    ALL_FAULTS,
    LLM_STAGES,
    account,
    ledger_lines,
    pipeline_overrides,
    planned_task_ids,
    run_pipeline,
    server_process,
    settings_for,
)

# 4 disciplines x 2 rounds -> 14 subjects (each round asks for its share of the cap of 5) -> 14 syllabi
# -> 980 questions -> 980 answers (~1,980 calls).
CHAOS_SIZES = {
    "subjects.rounds": 2,
    "subjects.per_round": 5,
    "subjects.max_subjects": 5,
    "questions.questions_per_syllabus": 70,
    "llm.concurrency": 32,
    "llm.timeout_s": 1.0,
    "llm.retry_max_wait_s": 0.05,
    "llm.max_retries": 6,
}


async def test_pipeline_survives_twenty_percent_faults(tmp_path: Path) -> None:
    faults = [
        "--fault-rate",
        "0.2",
        "--fault-kinds",
        ",".join(ALL_FAULTS),
        "--seed",
        "20",
        "--retry-after",
        "0.05",
        "--hang",
        "2",
    ]
    with server_process(*faults) as (base_url, server_stats):
        settings = settings_for(pipeline_overrides(tmp_path, base_url, **CHAOS_SIZES))
        reports = await run_pipeline(settings)
        stats = server_stats()

    planned = planned_task_ids(settings)
    assert sum(len(ids) for ids in planned.values()) >= 1_900
    for stage in LLM_STAGES:
        books = account(settings, stage, planned[stage])
        assert not books.lost, f"{stage}: {len(books.lost)} planned tasks neither done nor failed"
        assert not books.duplicate_ids, f"{stage}: duplicated records"
        assert not books.done & books.failed, f"{stage}: a task is both done and failed"
        assert books.done <= books.planned and books.failed <= books.planned
        assert len(books.done) >= 0.9 * len(books.planned), f"{stage}: too few records under 20% faults"
    lines = ledger_lines(settings)
    assert sum(not line["cached"] for line in lines) == stats["count"]
    injected = {kind: n for kind, n in stats["counts_by_kind"].items() if kind != "ok"}
    assert set(injected) == set(ALL_FAULTS), f"not every fault kind was exercised: {injected}"
    assert 0.15 < sum(injected.values()) / stats["count"] < 0.25
    assert Counter(line["ok"] for line in lines if not line["cached"])[False] > 0
    print(
        f"\nchaos figures: calls={stats['count']} injected={injected} "
        f"records={ {s: r['records_written'] for s, r in reports.items()} } "
        f"failed={ {s: r['failed'] for s, r in reports.items()} }"
    )
