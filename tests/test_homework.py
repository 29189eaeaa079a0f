"""Homework sampling rules (over many seeds), the question prompt, and a non-English run end to end."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from support.sizes import TINY_RUN

from glan_utils.core.errors import ConfigError
from glan_utils.core.records import ClassSession, Syllabus
from glan_utils.runs.store import RunStore
from glan_utils.settings import load_settings
from glan_utils.settings.stages import EMBEDDED_QUESTION_TYPES, QUESTION_TYPES
from glan_utils.stages import pipeline
from glan_utils.stages.questions import (
    Draw,
    QuestionTask,
    current_questions,
    draws,
    pick_question_type,
    question_prompt,
    type_weights,
)
from glan_utils.testing.fake_payloads import default_content


def syllabus(sessions: int, concepts: int = 5, shared: bool = False) -> Syllabus:
    return Syllabus(
        subject_id="s",
        discipline_id="d",
        discipline="Physics",
        subject_name="Optics",
        level="ug",
        sessions=[
            ClassSession(
                index=i,
                title=f"Session {i}",
                key_concepts=[f"c{0 if shared else i}.{j}" for j in range(concepts)],
            )
            for i in range(1, sessions + 1)
        ],
    )


def check_rules(draw: Draw, source: Syllabus) -> None:
    concepts = {s.index: set(s.key_concepts) for s in source.sessions}
    chosen = set(draw.concepts)
    assert len(chosen) == len(draw.concepts), "a concept is used twice"
    if draw.difficulty == "basic":
        (index,) = draw.session_indices
        assert 1 <= len(chosen) <= 5 and chosen <= concepts[index]
    else:
        a, b = draw.session_indices
        assert a != b and 2 <= len(chosen) <= 5 and chosen <= concepts[a] | concepts[b]
        assert chosen & concepts[a] and chosen & concepts[b]


@pytest.mark.parametrize(("sessions", "concepts"), [(2, 1), (3, 2), (12, 5), (30, 8)])
def test_sampling_rules_hold_for_many_seeds(sessions, concepts):
    source = syllabus(sessions, concepts)
    for seed in range(150):
        planned = draws(source, 8, 0.5, seed)
        assert Counter(d.difficulty for d in planned) == {"basic": 4, "challenging": 4}
        assert [d.sample_index for d in planned] == list(range(8))
        for draw in planned:
            check_rules(draw, source)


def test_ratio_decides_the_mix():
    source = syllabus(5)
    for ratio, challenging in [(0.0, 0), (0.3, 3), (1.0, 10)]:
        assert sum(d.difficulty == "challenging" for d in draws(source, 10, ratio, seed=1)) == challenging


def test_each_question_gets_a_fresh_reproducible_draw():
    source = syllabus(10)
    planned = draws(source, 40, 0.5, seed=7)
    assert len({(d.session_indices, d.concepts) for d in planned}) >= 35  # not one sample reused for a batch
    assert draws(source, 40, 0.5, seed=7) == planned
    assert draws(source, 40, 0.5, seed=8) != planned
    assert draws(source, 20, 0.5, seed=7)[:5] != draws(syllabus(11), 20, 0.5, seed=7)[:5]  # the syllabus seeds too


def test_degenerate_syllabi_fall_back_to_basic():
    for source in (
        syllabus(1),
        syllabus(4, concepts=1, shared=True),
    ):  # one session; all sessions share one concept
        for draw in draws(source, 6, 1.0, seed=0):
            assert draw.difficulty == "basic"
            check_rules(draw, source)


def test_prompt_carries_whole_syllabus_progress_and_exact_concepts():
    source = syllabus(6)
    draw = Draw(3, "challenging", (2, 5), ("c2.1", "c5.0", "c5.3"))
    text = question_prompt(QuestionTask(source, draw), "English").messages[-1]["content"]
    assert all(f"Session {i}" in text for i in range(1, 7))
    assert "learned up to session 5" in text and '"c2.1", "c5.0", "c5.3"' in text
    assert "challenging" in text


async def test_non_english_run_end_to_end(openai_server, make_settings):
    settings = make_settings(
        openai_server.base_url,
        {**TINY_RUN, "language": "Deutsch"},
    )
    reports = await pipeline.run_until(settings, "answers")
    assert all(r.summary.failed == 0 for r in reports.values())
    assert all(
        any("language: " in m["content"] and "Deutsch" in m["content"] for m in r["messages"])
        for r in openai_server.requests
    )
    store = RunStore(settings.run_dir)
    pairs = list(store.iter_records("answers"))
    assert len(pairs) == 5 * 2 and all(p.language == "Deutsch" for p in pairs)
    assert all(q.language == "Deutsch" for q in store.iter_records("questions"))


def test_question_types_are_drawn_per_question_and_recorded(make_settings, tmp_path):
    remote = make_settings("http://127.0.0.1:9/v1")
    embedded = load_settings(None, {"output_dir": str(tmp_path / "e")}, environ={})
    types = remote.questions.question_types
    assert types == list(QUESTION_TYPES) and len(types) == 7
    assert embedded.questions.question_types == list(EMBEDDED_QUESTION_TYPES)  # the small model's short list
    kinds = [pick_question_type(0, "syl", i, types) for i in range(200)]
    assert kinds == [pick_question_type(0, "syl", i, types) for i in range(200)]  # reproducible
    assert set(kinds) == set(types)  # every type is drawn
    task = QuestionTask(syllabus(3), Draw(0, "basic", (2,), ("c2.0",)), question_type="code with tests")
    assert task.id != QuestionTask(syllabus(3), Draw(0, "basic", (2,), ("c2.0",))).id  # the type shapes the task
    text = question_prompt(task, "English", types).messages[-1]["content"]
    assert 'Question type: "code with tests"' in text and "no title or header" in text
    assert '"type_used"' in text and all(f'"{t}"' in text for t in types) and "40 to 150 words" in text


def test_type_weights_follow_the_field_and_the_most_specific_entry_wins(make_settings):
    settings = make_settings("http://127.0.0.1:9/v1", {"questions.type_weights.Dance": {"case analysis": 0}})
    types = settings.questions.question_types

    def drawn(*names: str) -> Counter[str]:
        weights = type_weights(settings, types, *names)
        return Counter(pick_question_type(0, "syl", i, types, weights) for i in range(700))

    dance = drawn("Dance", "Arts", "Humanities")  # the field says no code; Dance's own entry drops case analysis
    assert dance["code with tests"] == 0 and dance["case analysis"] == 0 and dance["compare and contrast"] > 100
    computing = drawn("Computer science", "Computing and systems", "Formal sciences")
    assert computing["code with tests"] > 2 * 700 / len(types)
    asked = make_settings("http://127.0.0.1:9/v1", {"questions.type_weights.dance": {"code with tests": 1}})
    assert type_weights(asked, types, "Dance", "Arts", "Humanities")[types.index("code with tests")] == 1
    assert type_weights(settings, types, "Basket weaving", "Crafts", "Unlisted field") == [1.0] * len(types)
    uniform = [pick_question_type(0, "syl", i, types, [1.0] * len(types)) for i in range(50)]
    assert uniform == [pick_question_type(0, "syl", i, types) for i in range(50)]  # unweighted runs keep their ids
    with pytest.raises(ConfigError, match="negative"):
        make_settings("http://127.0.0.1:9/v1", {"questions.type_weights.Dance": {"case analysis": -1}})


async def test_the_type_the_writer_used_is_recorded_answered_and_the_plan_keeps_it(openai_server, make_settings):
    def writer_falls_back(body: dict[str, Any]) -> str:
        reply = default_content(body, 0)
        if "type_used" not in json.dumps(body.get("response_format") or {}):
            return reply
        return json.dumps(json.loads(reply) | {"type_used": "case analysis"})

    openai_server.responder = writer_falls_back
    settings = make_settings(
        openai_server.base_url,
        {
            **TINY_RUN,
            "questions.questions_per_syllabus": 6,
            "questions.question_types": ["code with tests", "case analysis"],
        },
    )
    await pipeline.run_until(settings, "answers")
    writes = [b for b in openai_server.requests if "type_used" in str(b.get("response_format"))]
    asked = [b["messages"][-1]["content"] for b in writes]
    assert any('Question type: "code with tests"' in text for text in asked)  # code was drawn ...
    store = RunStore(settings.run_dir)
    questions = list(store.iter_records("questions"))
    assert {q.question_type for q in questions} == {"case analysis"}  # ... but the writer used a case analysis
    assert {p.question_type for p in store.iter_records("answers")} == {"case analysis"}
    systems = [b["messages"][0]["content"] for b in openai_server.requests if "response_format" not in b]
    assert systems and not any("runnable code" in s for s in systems)
    assert sum(1 for _ in current_questions(settings)) == len(questions)  # still the plan's questions


async def test_questions_record_their_type(openai_server, make_settings):
    settings = make_settings(
        openai_server.base_url,
        {
            **TINY_RUN,
            "questions.questions_per_syllabus": 4,
            "questions.question_types": ["case analysis", "derivation or proof"],
        },
    )
    await pipeline.run_until(settings, "answers")
    store = RunStore(settings.run_dir)
    questions = list(store.iter_records("questions"))
    assert {q.question_type for q in questions} == {"case analysis", "derivation or proof"}
    pairs = {p.question_id: p for p in store.iter_records("answers")}
    assert all(pairs[q.id].question_type == q.question_type for q in questions)
    systems = [b["messages"][0]["content"] for b in openai_server.requests if "response_format" not in b]
    assert all('type: "case analysis"' in s or 'type: "derivation or proof"' in s for s in systems)
