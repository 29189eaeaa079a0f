"""The whole pipeline: resume after an interruption, no calls on rerun, estimates that match reality."""

from __future__ import annotations

import asyncio
from pathlib import Path

from glan_utils.core.jsonl import iter_jsonl
from glan_utils.runs.store import RunStore
from glan_utils.stages import pipeline
from glan_utils.testing import OpenAIServer

TAXONOMY = str(Path(__file__).parent / "data" / "taxonomy" / "paths.csv")
SIZES = {
    "taxonomy.source": TAXONOMY,
    "subjects.rounds": 2,
    "subjects.per_round": 2,
    "subjects.max_subjects": 2,
    "syllabi.min_sessions": 2,
    "syllabi.max_sessions": 4,
    "questions.questions_per_syllabus": 3,
}


async def test_interrupted_stage_resumes_without_duplicates_or_repeated_calls(make_settings):
    with OpenAIServer(models=["fake-model"], latency_s=0.02) as server:
        settings = make_settings(server.base_url, {**SIZES, "llm.concurrency": 2})
        await pipeline.run_until(settings, "syllabi")
        store = RunStore(settings.run_dir)
        server.reset_stats()
        planned = pipeline.planned_calls(settings, "questions")
        run = asyncio.ensure_future(pipeline.run(settings, "questions"))
        while store.count("questions") < 4:  # interrupt mid-stage, like a kernel restart
            await asyncio.sleep(0.005)
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await asyncio.sleep(0.2)  # requests cut off in flight still reach the server after its latency
        done_before, sent_before = store.count("questions"), server.count
        assert 4 <= done_before < planned
        report = await pipeline.run(settings, "questions")
        rows = [row["id"] for row in iter_jsonl(store.records_path("questions"))]
        assert len(rows) == len(set(rows)) == planned  # every question once, none twice
        assert report.summary.skipped == done_before
        assert server.count - sent_before == report.llm.calls  # finished work is never asked again:
        assert report.llm.calls + report.llm.cached == planned - done_before  # one call per missing question
        assert set(server.counts_by_kind) == {"ok"}


async def test_estimates_match_calls_and_rerun_makes_none(openai_server, make_settings):
    settings = make_settings(openai_server.base_url, SIZES)
    for stage in pipeline.STAGES:
        planned = pipeline.planned_calls(settings, stage)
        before = openai_server.count
        report = await pipeline.RUNNERS[stage](settings)
        assert openai_server.count - before == planned == report.llm.calls, stage
        assert pipeline.estimate_stage(settings, stage).calls == planned
    sent = openai_server.count
    reports = await pipeline.run_until(settings, "answers")
    assert openai_server.count == sent
    assert all(r.summary.records == 0 and r.llm.calls == 0 for r in reports.values())
    assert all(r.summary.skipped == r.summary.planned > 0 for r in reports.values())  # every task seen, none run
    manifest = RunStore(settings.run_dir).read_manifest()["stages"]
    assert all(manifest[name]["status"] == "complete" and manifest[name]["skipped_done"] > 0 for name in reports)
    manifest = RunStore(settings.run_dir).read_manifest()["stages"]
    assert set(pipeline.STAGES) | {"subject_rounds"} <= set(manifest)
    assert manifest["answers"]["status"] == "complete"


def test_preview_prompts_exist_before_any_run(make_settings):
    settings = make_settings("http://127.0.0.1:9/v1", {"language": "Deutsch"})
    for stage in pipeline.STAGES:
        prompt = pipeline.preview_prompt(settings, stage)
        assert prompt.name and any('"Deutsch"' in m["content"] for m in prompt.messages)
        estimate = pipeline.estimate_stage(settings, stage)
        assert estimate.calls > 0 and estimate.prompt_tokens > 0


async def test_config_snapshot_keeps_each_stage_settings(openai_server, make_settings):
    """Each stage's notebook sets only its own section; config.yaml must show what every stage ran with."""
    first = make_settings(openai_server.base_url, {"subjects.rounds": 3, "questions.questions_per_syllabus": 9})
    pipeline.open_store(first, "subjects")
    later = make_settings(openai_server.base_url, {"questions.questions_per_syllabus": 2})
    pipeline.open_store(later, "questions")
    snapshot = RunStore(later.run_dir).read_config()
    assert snapshot["subjects"]["rounds"] == 3
    assert snapshot["questions"]["questions_per_syllabus"] == 2
