"""One planner: the estimate made before each stage equals the calls the stage then makes on the test server.

A settings file runs through 01->04's stages (taxonomy, subjects, syllabi, questions, answers). Before each
stage the planner reads the run so far; its call count for the stage must be exactly what the server then
receives. Counts known from the settings alone (a taxonomy file, subject rounds) must also match the
settings-only estimate that `glan estimate` prints without a run.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from support.sizes import TINY_RUN

from glan_utils.app.summary import run_table
from glan_utils.data.build import build_dataset
from glan_utils.runs.store import RunStore
from glan_utils.settings import Settings, load_settings
from glan_utils.stages import pipeline
from glan_utils.stages.questions import current_questions

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def endpoint(tmp_path: Path, base_url: str) -> dict[str, object]:
    return {
        "output_dir": str(tmp_path / "outputs"),
        "llm.base_url": base_url,
        "llm.cache_path": str(tmp_path / "cache.sqlite"),
        "llm.retry_max_wait_s": 0.2,
        "llm.timeout_s": 10,
    }


async def calls_per_stage(settings: Settings, server) -> list[tuple[str, int, int]]:
    """(stage, calls the planner promised just before it, calls made) for every stage.

    A call made is a request the server received or a response-cache hit (two questions with the same text get
    one answer request); the ledger must agree with the server on the requests."""
    seen = []
    for stage in pipeline.STAGES:
        promised = pipeline.planned_calls(settings, stage)
        before = server.count
        report = await pipeline.run(settings, stage)
        assert report.llm.calls == server.count - before, stage
        seen.append((stage, promised, report.llm.calls + report.llm.cached))
    return seen


async def test_estimate_before_each_stage_is_the_calls_it_makes(openai_server, tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "taxonomy": {"n_fields": 2, "n_subfields": 2, "n_disciplines": 2},
                "subjects": {"rounds": 3, "per_round": 3, "max_subjects": 4},
                "syllabi.min_sessions": 2,
                "syllabi.max_sessions": 4,
                "questions": {"questions_per_syllabus": 3},
                "llm": {"model": "fake-model"},
            }
        )
    )
    settings = load_settings(config, endpoint(tmp_path, openai_server.base_url), environ={})
    from_settings = pipeline.plans(settings, read_run=False)
    assert from_settings["taxonomy"].calls == 1 + 2 + 4
    seen = await calls_per_stage(settings, openai_server)
    (_, tax_promised, tax_made), *later = seen
    assert [promised for _, promised, _ in later] == [made for _, _, made in later], seen
    assert all(made > 0 for _, _, made in seen), seen
    # Within the taxonomy stage each level depends on the replies before it: the plan is an upper bound, and a
    # level that came back short is named in the manifest (this server's seeded replies give one field 1 of 2).
    nodes = list(RunStore(settings.run_dir).iter_records("taxonomy"))
    assert tax_made == 1 + sum(n.level == "field" for n in nodes) + sum(n.level == "subfield" for n in nodes)
    assert tax_made < tax_promised
    manifest = RunStore(settings.run_dir).read_manifest()["stages"]["taxonomy"]
    assert "of 2 subfields" in manifest["fewer_children"]
    kept = len(pipeline.kept_disciplines(settings))
    assert dict((s, m) for s, _, m in seen)["subjects"] == kept * 3  # 3 rounds per kept discipline, not 2
    # A second look reads the run: every stage is sized by what the previous one kept.
    assert pipeline.plan_source(settings).startswith(f"read run '{settings.run_name}'")


async def test_file_taxonomy_plan_is_exact_from_settings_alone(openai_server, tmp_path):
    taxonomy = tmp_path / "tax.yaml"
    taxonomy.write_text("Sciences:\n  Physical: [Physics, Chemistry]\n  Life: [Biology]\n")
    config = tmp_path / "cfg.yaml"
    config.write_text("taxonomy.source: tax.yaml\nsubjects: {rounds: 7, per_round: 3}\nllm.model: fake-model\n")
    settings = load_settings(config, endpoint(tmp_path, openai_server.base_url), environ={})
    assert settings.taxonomy.source == str(taxonomy.resolve())  # relative to the settings file
    planned = pipeline.plans(settings, read_run=False)
    assert (planned["taxonomy"].calls, planned["subjects"].calls) == (0, 3 * 7)
    await pipeline.run(settings, "taxonomy")
    before = openai_server.count
    await pipeline.run(settings, "subjects")
    assert openai_server.count - before == 21  # 7 rounds x 3 disciplines, as the file says


@pytest.mark.slow  # ~20k calls through the whole client (cache, ledger, records)
@pytest.mark.timeout(900)
async def test_paper_mini_runs_as_estimated(openai_server, tmp_path):
    settings = load_settings(
        CONFIGS / "paper-mini.yaml",
        {**endpoint(tmp_path, openai_server.base_url), "llm.model": "fake-model", "llm.concurrency": 64},
        environ={},
    )
    estimate = pipeline.plans(settings, read_run=False)
    seen = await calls_per_stage(settings, openai_server)
    assert [promised for _, promised, _ in seen] == [made for _, _, made in seen], seen
    made = dict((s, m) for s, _, m in seen)
    assert made["subjects"] == estimate["subjects"].calls == 60
    assert sum(made.values()) <= sum(p.calls for p in estimate.values())  # the settings-only plan bounds the run
    assert made["answers"] > 9_000


# ----- plans never orphan work -----


def test_a_slot_depends_only_on_its_index_and_seed() -> None:
    from glan_utils.core.records import ClassSession, Syllabus
    from glan_utils.stages.questions import draws

    source = Syllabus(
        subject_id="s",
        discipline_id="d",
        discipline="D",
        subject_name="S",
        level="undergraduate",
        sessions=[
            ClassSession(index=i, title=f"t{i}", key_concepts=[f"c{i}.{j}" for j in range(4)]) for i in (1, 2, 3)
        ],
    )
    for seed in range(30):
        for ratio in (0.0, 0.3, 0.5, 0.8, 1.0):
            ten = draws(source, 10, ratio, seed)
            assert draws(source, 11, ratio, seed)[:10] == ten
            assert draws(source, 3, ratio, seed) == ten[:3]
            assert abs(sum(d.difficulty == "challenging" for d in ten) - 10 * ratio) <= 1


async def test_changing_questions_per_syllabus_keeps_the_slots(openai_server, tmp_path) -> None:
    taxonomy = tmp_path / "tax.yaml"
    taxonomy.write_text("Sciences:\n  Physical: [Physics]\n")
    base = {
        **endpoint(tmp_path, openai_server.base_url),
        "llm.model": "fake-model",
        "taxonomy.source": str(taxonomy),
        "subjects.rounds": 1,
        "subjects.per_round": 2,
        "subjects.max_subjects": 2,
    }

    def at(n: int) -> Settings:
        return load_settings(None, {**base, "questions.questions_per_syllabus": n}, environ={})

    ten = at(10)
    for stage in ("taxonomy", "subjects", "syllabi", "questions"):
        await pipeline.run(ten, stage)
    syllabi = pipeline.count_kept(ten, "syllabi")
    store = RunStore(ten.run_dir)
    first = {q.task_id for q in store.iter_records("questions")}
    before = openai_server.count
    report = await pipeline.run(at(11), "questions")
    assert openai_server.count - before == syllabi  # one new slot per syllabus; the first 10 are kept
    assert first <= {q.task_id for q in store.iter_records("questions")}
    assert report.extra["outside_plan"] == 0
    five = at(5)
    assert pipeline.plans(five)["answers"].calls == 5 * syllabi  # only the current plan's questions
    report = await pipeline.run(five, "questions")
    assert report.extra["outside_plan"] == 6 * syllabi
    status = run_table(five.run_dir).set_index("stage")
    assert status.loc["questions", "outside_plan"] == 6 * syllabi  # what `glan status` shows
    before = openai_server.count
    answers = await pipeline.run(five, "answers")
    assert openai_server.count - before == answers.llm.calls == 5 * syllabi


async def test_answers_outside_the_plan_leave_the_data_set(openai_server, tmp_path) -> None:
    """Answered at 4 questions per syllabus, then planned at 2: the data set keeps only the 2-slot plan's pairs."""
    base = {
        **endpoint(tmp_path, openai_server.base_url),
        "llm.model": "fake-model",
        **TINY_RUN,
        "quality.enabled": False,
        "dataset.quality.enabled": False,  # the plan applies even with the quality filter off
        "dataset.decontamination.enabled": False,
        "dataset.dedup.near": False,
        "dataset.export.test_per_discipline": 0,
    }
    four = load_settings(None, {**base, "questions.questions_per_syllabus": 4}, environ={})
    await pipeline.run_until(four, "answers")
    syllabi = pipeline.count_kept(four, "syllabi")
    two = load_settings(None, {**base, "questions.questions_per_syllabus": 2}, environ={})
    assert (await pipeline.run(two, "questions")).extra["outside_plan"] == 2 * syllabi
    report = build_dataset(RunStore(two.run_dir), two.dataset)
    planned = {q.id for q in current_questions(two)}
    kept = pq.read_table(two.run_dir / "dataset" / "qa.parquet", columns=["question_id"])["question_id"].to_pylist()
    assert report.excluded == {"outside_plan": 2 * syllabi} and report.records == 2 * syllabi
    assert set(kept) == planned and len(kept) == 2 * syllabi
