"""Syllabi: bounded reply schema, sessions renumbered, failures kept with raw output and retried on rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pydantic
import pytest

from glan_utils.core.records import Subject
from glan_utils.runs.store import RunStore
from glan_utils.stages import pipeline
from glan_utils.stages.syllabi import sibling_names, syllabus_reply
from glan_utils.testing import Behavior

TAXONOMY = str(Path(__file__).parent / "data" / "taxonomy" / "paths.csv")
SIZES = {
    "subjects.rounds": 1,
    "subjects.per_round": 2,
    "subjects.max_subjects": 1,
    "syllabi.min_sessions": 3,
    "syllabi.max_sessions": 5,
    "syllabi.concepts_per_session": 4,
}


async def prepared(server, make_settings, **extra):
    settings = make_settings(server.base_url, {"taxonomy.source": TAXONOMY, **SIZES, **extra})
    await pipeline.run_until(settings, "subjects")
    server.reset_stats()
    return settings


async def test_sessions_are_bounded_and_numbered(openai_server, make_settings):
    settings = await prepared(openai_server, make_settings)
    report = await pipeline.run(settings, "syllabi")
    store = RunStore(settings.run_dir)
    subjects = {s.id: s for s in store.iter_records("subjects")}
    syllabi = list(store.iter_records("syllabi"))
    assert len(syllabi) == len(subjects) == openai_server.count == report.llm.calls == 5
    schema = openai_server.requests[0]["response_format"]["json_schema"]["schema"]
    assert (schema["properties"]["sessions"]["minItems"], schema["properties"]["sessions"]["maxItems"]) == (
        3,
        5,
    )
    session_schema = schema["$defs"]["SessionReply"]["properties"]
    assert (session_schema["key_concepts"]["minItems"], session_schema["key_concepts"]["maxItems"]) == (2, 5)
    assert session_schema["title"]["maxLength"] <= 80
    assert "about 4 (2 to 5)" in openai_server.requests[0]["messages"][-1]["content"]
    for syllabus in syllabi:
        assert 3 <= len(syllabus.sessions) <= 5
        assert [s.index for s in syllabus.sessions] == list(range(1, len(syllabus.sessions) + 1))
        assert all(1 <= len(s.key_concepts) <= 5 for s in syllabus.sessions)
        subject = subjects[syllabus.subject_id]
        assert (syllabus.subject_name, syllabus.discipline_id) == (
            subject.subject_name,
            subject.discipline_id,
        )
        assert syllabus.provenance.parent_ids == [subject.id, subject.discipline_id]


async def test_unparseable_reply_is_kept_as_failure_then_retried(openai_server, make_settings):
    settings = await prepared(openai_server, make_settings, **{"llm.concurrency": 1})
    # two tasks are in flight: both first replies are bad, and one of the two re-asks is bad too
    openai_server.script(*[Behavior("text", content="no JSON")] * 3)
    report = await pipeline.run(settings, "syllabi")
    store = RunStore(settings.run_dir)
    failures = list(store.iter_failures("syllabi"))
    assert report.summary.failed == 1 and len(failures) == 1 and report.repaired == 1
    assert failures[0].raw == "no JSON" and failures[0].reason
    assert store.count("syllabi") == 4
    again = await pipeline.run(settings, "syllabi")
    assert again.llm.calls == 1 and store.count("syllabi") == 5  # only the failed subject is asked again


async def test_syllabus_has_course_parts_and_described_sessions_at_paper_sampling(openai_server, make_settings):
    settings = await prepared(openai_server, make_settings)
    await pipeline.run(settings, "syllabi")
    body = openai_server.requests[0]
    assert (body["temperature"], body["top_p"]) == (1.0, 0.95)  # paper §2.3
    schema = body["response_format"]["json_schema"]["schema"]
    assert {"overview", "objectives", "outcomes", "sessions"} <= set(schema["required"])
    assert schema["$defs"]["SessionReply"]["properties"]["description"]["minLength"] == 1
    reply = syllabus_reply(3, 5, 4)
    session = {"title": "Lenses", "description": "", "key_concepts": ["focal length"]}
    with pytest.raises(pydantic.ValidationError):  # an empty description is no longer accepted
        reply.model_validate({"overview": "o", "objectives": ["a"], "outcomes": ["b"], "sessions": [session] * 3})
    for syllabus in RunStore(settings.run_dir).iter_records("syllabi"):
        assert syllabus.overview and syllabus.objectives and syllabus.outcomes
        assert all(s.description for s in syllabus.sessions)


def test_siblings_are_the_discipline_s_other_courses_most_alike_first():
    def subject(name: str, discipline: str = "econ") -> Subject:
        return Subject(discipline_id=discipline, discipline=discipline, subject_name=name, level="undergraduate")

    first, econometrics, second, other = (
        subject("Microeconomics I"),
        subject("Econometrics"),
        subject("Microeconomics II"),
        subject("Microeconomics", "business"),
    )
    found = sibling_names([first, econometrics, second, other, subject("Macroeconomics")], limit=2)
    assert found[first.id] == ["Microeconomics II", "Econometrics"]  # the most alike first, never itself
    assert found[other.id] == [] and len(found[econometrics.id]) == 2  # only its own discipline's courses


async def test_the_syllabus_prompt_names_sibling_courses(openai_server, make_settings):
    settings = await prepared(openai_server, make_settings, **{"subjects.per_round": 3, "subjects.max_subjects": 3})
    await pipeline.run(settings, "syllabi")
    store = RunStore(settings.run_dir)
    subjects = list(store.iter_records("subjects"))
    assert len(subjects) > len({s.discipline_id for s in subjects})  # some discipline has several courses
    for body in openai_server.requests:
        text = body["messages"][-1]["content"]
        own = next(s for s in subjects if f"subject {json.dumps(s.subject_name)}" in text)
        others = [s.subject_name for s in subjects if s.discipline_id == own.discipline_id and s.id != own.id]
        if not others:
            assert "each with its own syllabus" not in text
            continue
        named = text.split("each with its own syllabus:")[1]
        assert all(json.dumps(name) in named for name in others) and json.dumps(own.subject_name) not in named
