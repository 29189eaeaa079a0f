"""Regenerating one node: only its subtree is paid for, and its old records leave the data set."""

from __future__ import annotations

import pyarrow.parquet as pq
from support.sizes import TINY_RUN

from glan_utils.data.build import build_dataset
from glan_utils.runs.store import RunStore
from glan_utils.stages import pipeline
from glan_utils.stages.regenerate import regenerate, regenerations
from glan_utils.stages.superseded import superseded_ids
from glan_utils.testing import OpenAIServer

SIZES = {
    **TINY_RUN,
    # keep every pair the rules or the (random) fake judge would drop: this test is about regeneration only
    "dataset.quality.drop_flags": [],
    "dataset.quality.min_score": 1,
    "dataset.decontamination.enabled": False,
}


async def test_regenerating_a_subject_pays_for_its_subtree_only(make_settings):
    with OpenAIServer(models=["fake-model", "other-model"]) as server:
        settings = make_settings(server.base_url, SIZES)
        await pipeline.run_until(settings, "quality")
        store = RunStore(settings.run_dir)
        subject_id = next(store.iter_records("syllabi")).subject_id
        old_pairs = {p.id for p in store.iter_records("answers") if p.subject_id == subject_id}
        old_questions = {q.id for q in store.iter_records("questions") if q.subject_id == subject_id}
        config = (settings.run_dir / "config.yaml").read_text(encoding="utf-8")
        server.reset_stats()

        line = await regenerate(settings, subject_id, seed=7, model="other-model")

        per_syllabus = settings.questions.questions_per_syllabus
        assert server.count == line["calls"] == 3 * per_syllabus  # question, answer, judge; nothing else
        assert {r["model"] for r in server.requests} == {"other-model"}
        assert (line["superseded"], line["questions"], line["pairs"], line["seed"]) == (2 * per_syllabus, 2, 2, 7)
        assert superseded_ids(settings.run_dir) == old_pairs | old_questions
        assert (settings.run_dir / "config.yaml").read_text(encoding="utf-8") == config  # the run's settings stay

        server.reset_stats()
        again = await pipeline.run(settings, "quality")  # the stage judges nothing twice and skips the old pairs
        assert server.count == 0 and again.summary.records == 0

        second = await regenerate(settings, subject_id)  # a second round draws fresh sample indices again
        assert (
            second["round"] == 2 and second["questions"] == per_syllabus and len(regenerations(settings.run_dir)) == 2
        )

    report = build_dataset(store, settings.dataset)
    kept = set(pq.read_table(settings.run_dir / "dataset" / "qa.parquet", columns=["id"])["id"].to_pylist())
    new_pairs = {p.id for p in store.iter_records("answers") if p.subject_id == subject_id} - old_pairs
    assert not kept & old_pairs and len(new_pairs) == 2 * per_syllabus
    latest = {
        p.id
        for p in store.iter_records("answers")
        if p.id in new_pairs and p.id not in superseded_ids(settings.run_dir)
    }
    assert latest <= kept and len(latest) == per_syllabus
    assert report.quality["by_reason"]["superseded"] == 2 * per_syllabus
