"""The whole pipeline: resume after an interruption, no calls on rerun, estimates that match reality."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from glan_utils.app.summary import run_table
from glan_utils.core.jsonl import iter_jsonl
from glan_utils.core.records import pipeline_stages
from glan_utils.core.stale import stale_stages
from glan_utils.runs.store import RunStore
from glan_utils.settings.notebooks import INTERACTIVE_RUN, describe_settings, notebook_settings
from glan_utils.stages import pipeline
from glan_utils.stages.registry import RunChanged
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


async def test_a_continued_run_refuses_settings_that_shaped_its_records(openai_server, make_settings):
    """Seed 7 made the taxonomy and subjects: syllabi without the seed, or subjects with other rounds, are refused
    (nothing written, config.yaml kept); sizes of a stage not run yet may still change."""
    seeded = make_settings(openai_server.base_url, {**SIZES, "seed": 7})
    await pipeline.run_until(seeded, "subjects")
    store = RunStore(seeded.run_dir)
    config = store.path("config.yaml").read_text()
    forgot = make_settings(openai_server.base_url, SIZES)
    with pytest.raises(RunChanged, match=r"seed 7 -> 0.*glan run .* --replan") as refused:
        await pipeline.run(forgot, "syllabi")
    assert "\n" not in str(refused.value)
    with pytest.raises(RunChanged, match=r"subjects\.rounds 2 -> 3"):
        await pipeline.run(
            make_settings(openai_server.base_url, {**SIZES, "seed": 7, "subjects.rounds": 3}), "subjects"
        )
    assert not store.records_path("syllabi").exists() and store.path("config.yaml").read_text() == config
    later = make_settings(openai_server.base_url, {**SIZES, "seed": 7, "syllabi.max_sessions": 5})
    await pipeline.run(later, "syllabi")  # syllabi has no records yet: its sizes are free to change
    pipeline.check_run(later)


async def test_replan_moves_contradicted_records_aside_and_keeps_the_config_history(openai_server, make_settings):
    first = make_settings(openai_server.base_url, SIZES)
    await pipeline.run_until(first, "syllabi")
    store = RunStore(first.run_dir)
    before = {stage: store.line_count(stage) for stage in ("taxonomy", "subjects", "syllabi")}
    more = make_settings(openai_server.base_url, {**SIZES, "syllabi.max_sessions": 5})
    with pytest.raises(RunChanged, match=r"syllabi\.max_sessions 4 -> 5"):
        pipeline.check_run(more)
    line = pipeline.replan(more)
    assert line and f"{before['syllabi']:,} records of syllabi moved" in line
    moved = next((first.run_dir / "replaced").iterdir())
    assert len(list(iter_jsonl(moved / "syllabi.jsonl"))) == before["syllabi"]
    assert store.line_count("subjects") == before["subjects"] and not store.records_path("syllabi").exists()
    assert "syllabi" not in store.read_manifest()["stages"] and "subjects" in store.read_manifest()["stages"]
    history = list(iter_jsonl(store.path("config.history.jsonl")))
    assert history[-1]["config"]["syllabi"]["max_sessions"] == 4 and "max_sessions" in history[-1]["note"]
    assert store.read_config()["syllabi"]["max_sessions"] == 5
    pipeline.check_run(more)
    assert pipeline.replan(more) is None
    await pipeline.run(more, "syllabi")
    assert store.line_count("syllabi") == before["syllabi"]

    reseeded = make_settings(openai_server.base_url, {**SIZES, "syllabi.max_sessions": 5, "seed": 3})
    assert "records of taxonomy, subjects" in (pipeline.replan(reseeded) or "")
    await pipeline.run_until(reseeded, "subjects")
    seeds = {r.provenance.params["run_seed"] for r in store.iter_records("subjects")}
    assert seeds == {3}


async def test_stages_after_a_saved_review_or_a_rerun_upstream_are_stale_until_rerun(openai_server, make_settings):
    settings = make_settings(openai_server.base_url, SIZES)
    await pipeline.run_until(settings, "syllabi")
    assert stale_stages(settings.run_dir) == {}
    reviews = settings.run_dir / "reviews"
    reviews.mkdir()
    (reviews / "alice.json").write_text("{}")
    stale = stale_stages(settings.run_dir)
    assert set(stale) == {"subjects", "syllabi"} and "review" in stale["subjects"]
    assert run_table(settings.run_dir).set_index("stage").loc["syllabi", "status"].startswith("stale (review")
    assert "stale (rerun them)" in describe_settings(settings, "syllabi"), "the notebooks say so too"
    await pipeline.run(settings, "subjects")  # rerun: it reads the review; syllabi still predates it
    assert set(stale_stages(settings.run_dir)) == {"syllabi"}
    await pipeline.run(settings, "syllabi")
    assert stale_stages(settings.run_dir) == {}


def test_a_notebook_without_a_run_name_writes_its_own_run_not_the_demo(tmp_path, monkeypatch):
    monkeypatch.delenv("GLAN_RUN_NAME", raising=False)
    assert notebook_settings("02_subjects", {"run_name": None}).run_name == INTERACTIVE_RUN != "demo"
    named = tmp_path / "named.yaml"
    named.write_text("run_name: mine\n")
    assert notebook_settings("02_subjects", {"config_path": str(named)}).run_name == "mine"
    monkeypatch.setenv("GLAN_RUN_NAME", "from-env")
    assert notebook_settings("02_subjects", {}).run_name == "from-env"
    assert notebook_settings("02_subjects", {"run_name": "given"}).run_name == "given"


def test_status_knows_the_pipeline_without_importing_the_stages():
    assert pipeline_stages() == list(pipeline.STAGES)
