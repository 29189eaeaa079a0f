"""Follow-up conversations on the test server: rounds per pair, seeded kinds, whole-conversation context, resume,
more turns keeping the earlier ones, failures kept with their raw output, rule flags on every round."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from datasets import load_from_disk
from support.sizes import TINY_RUN

from glan_utils.core.errors import ConfigError
from glan_utils.core.records import FollowUp, QAPair
from glan_utils.data.build import build_dataset
from glan_utils.data.decontaminate import planted_texts
from glan_utils.runs.store import RunStore
from glan_utils.settings import FOLLOWUP_KINDS, load_settings
from glan_utils.stages import followups, pipeline
from glan_utils.testing import Behavior, OpenAIServer
from glan_utils.testing.fake_json import WORDS, seeded_rng
from glan_utils.testing.fake_payloads import default_content
from glan_utils.views import conversations as conversations_view

NOUNS = [f"{word}{i}" for word in WORDS for i in range(4)]


@pytest.fixture
async def answered(openai_server, make_settings):
    """A tiny run answered up to the QA pairs, with follow-ups at 2 turns."""
    settings = make_settings(openai_server.base_url, {**TINY_RUN, "followups.turns": 2})
    await pipeline.run_until(settings, "answers")
    openai_server.reset_stats()
    return settings


def _students(requests: list[dict]) -> list[dict]:
    return [r for r in requests if "response_format" in r]


async def test_rounds_see_the_conversation_and_record_kind_turn_and_seed(openai_server, answered):
    settings = answered
    pairs = {p.id: p for p in RunStore(settings.run_dir).iter_records("answers", QAPair)}
    planned = pipeline.planned_calls(settings, "followups")
    report = await pipeline.run(settings, "followups")
    assert planned == report.llm.calls == openai_server.count == 2 * 2 * len(pairs)
    records = list(RunStore(settings.run_dir).iter_records("followups", FollowUp))
    assert sorted((r.pair_id, r.turn) for r in records) == sorted((p, t) for p in pairs for t in (1, 2))
    assert {r.kind for r in records} <= set(FOLLOWUP_KINDS) and all(r.seed == settings.seed for r in records)
    assert all(bool(r.mistake) == (r.kind == "check_attempt") for r in records)
    assert all(bool(r.concept) == (r.kind == "connect") for r in records)
    tutors = [r for r in openai_server.requests if "response_format" not in r]
    by_last = {r["messages"][-1]["content"]: r["messages"] for r in tutors}
    for record in records:
        pair = pairs[record.pair_id]
        messages = by_last[record.student]  # the tutor answered this student turn, with the whole conversation
        assert messages[0]["role"] == "system" and "building on your earlier answers" in messages[0]["content"]
        assert [m["content"] for m in messages[1:3]] == [pair.question, pair.answer]
        assert len(messages) == 2 + 2 * record.turn
        if record.turn == 2:
            first = next(r for r in records if r.pair_id == record.pair_id and r.turn == 1)
            assert [m["content"] for m in messages[3:5]] == [first.student, first.tutor]
        assert record.provenance.parent_ids[0] == pair.id and record.student_provenance.prompt == "followups"
    student_prompts = [r["messages"][-1]["content"] for r in _students(openai_server.requests)]
    assert all(pairs[p].question in text for text in student_prompts for p in pairs if pairs[p].question in text)
    assert all("Write the student's next message." in text for text in student_prompts)
    assert set(followups.conversations(settings)) == set(pairs)


async def test_rerun_resumes_and_more_turns_keep_the_earlier_rounds(openai_server, answered):
    settings = answered
    await pipeline.run(settings, "followups")
    first = {(r.pair_id, r.turn): r for r in RunStore(settings.run_dir).iter_records("followups", FollowUp)}
    openai_server.reset_stats()
    again = await pipeline.run(settings, "followups")
    assert openai_server.count == again.llm.calls == 0 and again.summary.skipped == again.summary.planned > 0
    more = settings.model_copy(update={"followups": settings.followups.model_copy(update={"turns": 3})})
    pairs = len(first) // 2
    assert pipeline.planned_calls(more, "followups") == 2 * 3 * pairs
    report = await pipeline.run(more, "followups")
    assert openai_server.count == report.llm.calls == 2 * pairs  # rounds 1-2 come from the cache
    conversations = followups.conversations(more)
    assert all([r.turn for r in rounds] == [1, 2, 3] for rounds in conversations.values())
    for rounds in conversations.values():
        for r in rounds[:2]:
            assert r.id == first[r.pair_id, r.turn].id  # same kind, same turns: the draw kept them
    assert all(len(rounds) == 2 for rounds in followups.conversations(settings).values())


def test_the_kind_draw_depends_only_on_seed_pair_and_turn() -> None:
    kinds, later = list(FOLLOWUP_KINDS), ["eigenvalue", "rank"]
    draws = [followups.draw_kind(7, f"pair{i}", turn, kinds, later) for i in range(200) for turn in (1, 2)]
    assert draws == [followups.draw_kind(7, f"pair{i}", turn, kinds, later) for i in range(200) for turn in (1, 2)]
    assert draws != [followups.draw_kind(8, f"pair{i}", turn, kinds, later) for i in range(200) for turn in (1, 2)]
    mix = Counter(kind for kind, _ in draws)
    assert set(mix) == set(kinds) and min(mix.values()) > 40  # every kind, roughly uniform
    assert all(concept in later for kind, concept in draws if kind == "connect")
    assert all(concept == "" for kind, concept in draws if kind != "connect")


def test_every_kind_has_its_own_instruction_and_paper_turns_it_off(make_settings) -> None:
    settings = make_settings("http://127.0.0.1:9/v1")
    pair = followups.example_pair(settings)
    task = followups.Conversation(pair, [], ["rank"], 1)
    systems = {k: followups.student_prompt(task, [], k, "rank").messages[0]["content"] for k in FOLLOWUP_KINDS}
    assert len(set(systems.values())) == len(FOLLOWUP_KINDS)
    assert '"mistake" (the planted mistake)' in systems["check_attempt"] and '"rank"' in systems["connect"]
    paper = load_settings("configs/paper.yaml", environ={})
    assert paper.followups.turns == 0 and pipeline.plans(paper, read_run=False)["followups"].calls == 0
    with pytest.raises(ConfigError, match="unknown follow-up kinds"):
        make_settings("http://127.0.0.1:9/v1", {"followups.kinds": ["step", "gossip"]})


async def test_failed_round_is_kept_with_raw_output_and_retried(openai_server, answered):
    settings = answered.model_copy(
        update={
            "followups": answered.followups.model_copy(update={"turns": 1}),
            "llm": answered.llm.model_copy(update={"concurrency": 1}),
        }
    )
    openai_server.script(*[Behavior("wrong_schema")] * 3)
    report = await pipeline.run(settings, "followups")
    store = RunStore(settings.run_dir)
    failures = list(store.iter_failures("followups"))
    assert report.summary.failed == len(failures) == 1 and failures[0].raw
    assert json.loads(failures[0].raw) is not None
    retry = await pipeline.run(settings, "followups")
    assert retry.summary.failed == 0 and retry.summary.records == 1
    assert len(followups.conversations(settings)) == retry.summary.planned


async def test_rule_checks_run_on_every_round(make_settings):
    def responder(body: dict) -> str:
        system = body["messages"][0]["content"]
        if "next message of a student" in system:
            return json.dumps({"message": "Why does the second step hold?", "mistake": ""})
        if "Continue the conversation" in system:
            return "Sure! I'd be happy to help. Good luck with the homework and submit your answers by Friday."
        return default_content(body)

    with OpenAIServer(models=["fake-model"], responder=responder) as server:
        settings = make_settings(server.base_url, {**TINY_RUN, "followups.turns": 1})
        await pipeline.run_until(settings, "answers")
        await pipeline.run(settings, "followups")
    records = list(RunStore(settings.run_dir).iter_records("followups", FollowUp))
    assert records and all({"greeting", "submission_instructions"} <= set(r.flags) for r in records)


def _chat_responder(body: dict) -> str:
    """Student turns of distinct words (the same message for every second round); the tutor and the rest as usual."""
    system, last = body["messages"][0]["content"], body["messages"][-1]["content"]
    if "next message of a student" not in system:
        return default_content(body)
    if last.count("Tutor:") >= 2:
        return json.dumps({"message": "Could you show those steps again for me, with more detail on each one?"})
    words = seeded_rng(last).sample(NOUNS, 16)
    return json.dumps({"message": "In my attempt I used " + " ".join(words) + ", is that right?", "mistake": "x"})


async def test_export_writes_multi_turn_chats_deduplicated_and_decontaminated_over_every_turn(make_settings):
    with OpenAIServer(models=["fake-model"], responder=_chat_responder) as server:
        settings = make_settings(server.base_url, {**TINY_RUN, "followups.turns": 2, "dataset.quality.drop_flags": []})
        await pipeline.run_until(settings, "answers")
        await pipeline.run(settings, "followups")
    store = RunStore(settings.run_dir)
    rounds = followups.conversations(settings)
    planted = next(iter(rounds.values()))[0]  # a benchmark item that one pair's first follow-up copies
    report = build_dataset(store, settings.dataset, planted_texts([("gsm8k", planted.student)]))
    assert report.contaminated == 1 and report.kept == len(rounds) - 1
    rows = [json.loads(line) for split in ("train", "test") for line in store.path(f"dataset/{split}.jsonl").open()]
    assert planted.pair_id not in {row["id"] for row in rows}
    assert sorted(row["turns"] for row in rows) == [2] * (len(rows) - 1) + [3]  # round 2 repeats: kept once
    card = store.path("dataset/README.md").read_text()
    assert f"| 2 | {len(rows) - 1} |" in card and "| 3 | 1 |" in card  # the card counts rows per user turns
    pairs = {p.id: p for p in store.iter_records("answers", QAPair)}
    for row in rows:
        messages, done = row["messages"], rounds[row["id"]]
        assert [m["role"] for m in messages] == ["user", "assistant"] * row["turns"]
        assert messages[:2] == [
            {"role": "user", "content": pairs[row["id"]].question},
            {"role": "assistant", "content": pairs[row["id"]].answer},
        ]
        assert messages[2:] == [m for r in done[: row["turns"] - 1] for m in followups.round_messages(r)]
    hf = load_from_disk(str(store.path("dataset/hf")))
    exported = {row["id"]: row for split in hf.values() for row in split}
    assert {i: (r["turns"], r["messages"]) for i, r in exported.items()} == {
        row["id"]: (row["turns"], row["messages"]) for row in rows
    }
    # the same run without follow-ups: single-turn rows, exactly as before
    off = settings.model_copy(update={"followups": settings.followups.model_copy(update={"turns": 0})})
    await pipeline.run(off, "followups")
    build_dataset(store, settings.dataset)
    rows = [json.loads(line) for line in store.path("dataset/train.jsonl").open()]
    assert rows and all(row["turns"] == 1 and len(row["messages"]) == 2 for row in rows)


async def test_notebook_views_show_kind_mix_samples_and_what_turns_add(answered):
    settings = answered
    added = conversations_view.turns_added(settings)
    assert added.loc["followups", "calls"] == 2 * 2 * added.loc["answers", "calls"]
    assert added.loc["followups / answers", "calls"] == 4
    budget = settings.followups.student_max_tokens + settings.followups.max_tokens  # each round's two calls
    assert added.loc["followups", "completion_tokens"] == 2 * added.loc["answers", "calls"] * budget
    await pipeline.run(settings, "followups")
    mix = conversations_view.kind_mix(settings)
    assert list(mix.columns) == [*FOLLOWUP_KINDS, "total"] and mix["total"].sum() == 2 * added.loc["answers", "calls"]
    sample = conversations_view.sample_conversations(settings, 2)
    assert len(sample) == 2 * 6 and list(sample["role"][:6]) == ["user", "assistant"] * 3
    students = sample[(sample["role"] == "user") & (sample["turn"] > 0)]
    assert len(students) == 4 and set(students["kind"]) <= set(FOLLOWUP_KINDS)


def _judging_responder(body: dict) -> str:
    """Judge replies: a round with a planted mistake missed it (the fake tutor never names it), mean 7/3."""
    system = body["messages"][0]["content"]
    if "You grade the last reply of a tutor" in system:
        planted = "no mistake was planted" not in system
        scores = {"answers_followup": 1 if planted else 4, "consistent": 5, "caught_mistake": 1 if planted else 5}
        return json.dumps(scores | {"rationale": "ok"})
    return default_content(body)


async def test_judge_scores_each_round_on_the_conversation_rubric(make_settings):
    overrides = {**TINY_RUN, "followups.turns": 2, "followups.judge": True, "quality.model": "judge-model"}
    with OpenAIServer(models=["fake-model", "judge-model"], responder=_judging_responder) as server:
        settings = make_settings(server.base_url, overrides | {"dataset.quality.drop_flags": []})
        await pipeline.run_until(settings, "answers")
        server.reset_stats()
        planned = pipeline.planned_calls(settings, "followups")
        report = await pipeline.run(settings, "followups")
        judged = [r for r in server.requests if r["model"] == "judge-model"]
    records = list(RunStore(settings.run_dir).iter_records("followups", FollowUp))
    assert planned == report.llm.calls == 3 * len(records) and len(judged) == len(records)
    for record in records:
        assert set(record.scores) == set(followups.CRITERIA) and record.rationale == "ok"
        assert record.scores["caught_mistake"] == (1 if record.kind == "check_attempt" else 5)
        assert record.score == (7 / 3 if record.kind == "check_attempt" else 14 / 3)
    request = next(r for r in judged if "planted in the student's attempt" in r["messages"][0]["content"])
    attempt = next(r for r in records if r.kind == "check_attempt" and r.mistake in request["messages"][0]["content"])
    assert attempt.tutor in request["messages"][-1]["content"]  # the judge sees the reply it grades
    store = RunStore(settings.run_dir)
    build_dataset(store, settings.dataset)
    rows = [json.loads(line) for split in ("train", "test") for line in store.path(f"dataset/{split}.jsonl").open()]
    by_pair = {pair_id: [r.kind for r in done] for pair_id, done in followups.conversations(settings).items()}
    cut = [[*kinds, "check_attempt"].index("check_attempt") for kinds in by_pair.values()]
    assert sorted(row["turns"] - 1 for row in rows) == sorted(cut)  # a round below min_score ends it
    assert 0 in cut and 2 in cut  # some conversations cut at once, some kept whole


async def test_batch_mode_sends_each_round_in_waves_and_matches_the_online_run(openai_server, make_settings, tmp_path):
    def ids(settings) -> set[str]:
        return {r.id for r in RunStore(settings.run_dir).iter_records("followups", FollowUp)}

    online = make_settings(openai_server.base_url, {**TINY_RUN, "followups.turns": 1})
    await pipeline.run_until(online, "answers")
    await pipeline.run(online, "followups")
    apart = {"run_name": "batched", "llm.cache_path": str(tmp_path / "batched.sqlite")}
    batched = make_settings(openai_server.base_url, {**TINY_RUN, "followups.turns": 1, **apart})
    await pipeline.run_until(batched, "answers")
    openai_server.reset_stats()
    in_batch = {"llm.mode": "batch", "batch.poll_interval_s": 0.05}
    report = await pipeline.run(make_settings(openai_server.base_url, {**TINY_RUN, **apart, **in_batch}), "followups")
    pairs = len(ids(online))
    assert openai_server.counts_by_kind["ok"] == 0 and openai_server.counts_by_kind["batch"] == 2 * pairs
    assert report.summary.failed == 0 and ids(batched) == ids(online)  # student turns, then replies: two waves
