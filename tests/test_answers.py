"""Answers: a separate call per question (own model, temperature); pairs keep all parents and metadata."""

from __future__ import annotations

from support.sizes import TINY_RUN

from glan_utils.runs.store import RunStore
from glan_utils.stages import pipeline
from glan_utils.testing import Behavior, OpenAIServer
from glan_utils.views import tables


async def test_pairs_keep_parents_and_metadata_and_use_the_answer_model(make_settings):
    with OpenAIServer(models=["fake-model", "answer-model"]) as server:
        settings = make_settings(server.base_url, {**TINY_RUN, "answers.model": "answer-model"})
        await pipeline.run_until(settings, "questions")
        server.reset_stats()
        report = await pipeline.run(settings, "answers")
        requests = server.requests
    store = RunStore(settings.run_dir)
    questions = {q.id: q for q in store.iter_records("questions")}
    syllabi = {s.id: s for s in store.iter_records("syllabi")}
    disciplines = {d.id: d for d in pipeline.kept_disciplines(settings)}
    pairs = list(store.iter_records("answers"))
    assert len(pairs) == len(questions) == report.llm.calls == 10
    assert all(r["model"] == "answer-model" and r["temperature"] == 0.7 for r in requests)
    assert all("response_format" not in r for r in requests)  # free-text answers, full reasoning
    assert all("step by step" in r["messages"][0]["content"] for r in requests)  # the tutor's system turn
    asked = {q.question for q in questions.values()}
    assert {r["messages"][-1]["content"] for r in requests} == asked  # the user turn is the bare question
    for pair in pairs:
        question = questions[pair.question_id]
        assert pair.syllabus_id in syllabi and pair.subject_id == syllabi[pair.syllabus_id].subject_id
        discipline = disciplines[pair.discipline_id]
        assert [pair.field, pair.subfield, pair.discipline] == discipline.path
        for name in (
            "subject",
            "level",
            "difficulty",
            "question_type",
            "session_indices",
            "concepts",
            "language",
            "question",
        ):
            assert getattr(pair, name) == getattr(question, name)
        assert pair.answer and pair.provenance.model == "answer-model"
        assert pair.question_provenance == question.provenance
        assert pair.provenance.parent_ids == [
            question.id,
            question.syllabus_id,
            question.subject_id,
            question.discipline_id,
        ]


async def test_cut_off_answer_gets_one_retry_with_a_larger_budget(openai_server, make_settings):
    settings = make_settings(openai_server.base_url, {**TINY_RUN, "llm.concurrency": 1, "answers.max_tokens": 300})
    await pipeline.run_until(settings, "questions")
    openai_server.reset_stats()
    openai_server.script(Behavior("truncated"))
    report = await pipeline.run(settings, "answers")
    assert report.summary.failed == 0 and report.summary.records == 10
    budgets: dict[str, list[int]] = {}
    for body in openai_server.requests:
        budgets.setdefault(body["messages"][-1]["content"], []).append(body["max_tokens"])
    assert sorted(budgets.values()) == [[300]] * 9 + [[300, 600]]  # one retry, with twice the budget
    retried = [p for p in RunStore(settings.run_dir).iter_records("answers") if p.provenance.params["max_tokens"] > 300]
    assert len(retried) == 1  # the record says which budget made it
    table = tables.truncation_by_difficulty(settings).set_index(["stage", "difficulty"])
    answers = table.loc["answers"]
    assert answers["tasks"].sum() == 10 and answers["rescued"].sum() == 1 and answers["failed"].sum() == 0
    rescued_at = answers[answers["rescued"] == 1].index[0]
    assert answers.loc[rescued_at, "truncation_rate"] == 1 / answers.loc[rescued_at, "tasks"]
    assert table.loc["questions"]["tasks"].sum() == 10 and table.loc["questions"]["truncation_rate"].sum() == 0


async def test_answer_cut_twice_is_a_failure_kept_with_its_text(openai_server, make_settings):
    settings = make_settings(
        openai_server.base_url,
        {**TINY_RUN, "llm.concurrency": 1, "answers.max_tokens": 300, "answers.length_retry_max_tokens": 450},
    )
    await pipeline.run_until(settings, "questions")
    openai_server.reset_stats()
    openai_server.script(*[Behavior("truncated")] * 20)
    report = await pipeline.run(settings, "answers")
    assert sorted(r["max_tokens"] for r in openai_server.requests) == [300] * 10 + [450] * 10  # retry capped
    failure = next(RunStore(settings.run_dir).iter_failures("answers"))
    assert report.summary.failed == 10 and "max_tokens" in failure.reason and failure.raw
    answers = tables.truncation_by_difficulty(settings).set_index(["stage", "difficulty"]).loc["answers"]
    assert answers["failed"].sum() == 10 and set(answers["failure_rate"]) == {1.0}
    assert report.summary.failures_by_reason


def test_budgets_depend_on_the_endpoint(make_settings, tmp_path):
    from glan_utils.settings import load_settings
    from glan_utils.stages.bounds import budget

    remote = make_settings("http://127.0.0.1:9/v1")
    embedded = load_settings(None, {"output_dir": str(tmp_path / "e")}, environ={})
    for stage in ("taxonomy", "subjects", "syllabi", "questions", "answers"):
        tight, generous = budget(embedded, getattr(embedded, stage)), budget(remote, getattr(remote, stage))
        assert tight == {"max_tokens": getattr(embedded, stage).max_tokens} | {
            "length_retry_max_tokens": tight["max_tokens"]
        }
        assert (
            generous["max_tokens"] > tight["max_tokens"]
            and generous["length_retry_max_tokens"] > generous["max_tokens"]
        )
    assert budget(embedded, embedded.answers)["max_tokens"] == 1024  # the small model keeps today's bounds
    assert (embedded.questions.max_chars, remote.questions.max_chars) == (1500, 8000)
    assert (embedded.endpoint, remote.endpoint) == ("embedded", "remote")
    chosen = make_settings("http://127.0.0.1:9/v1", {"answers.max_tokens": 300, "subjects.per_round": 2})
    assert (budget(chosen, chosen.answers)["max_tokens"], chosen.subjects.per_round) == (300, 2)  # set = sent
