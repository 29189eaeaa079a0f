"""The code verifier: answers with code are run against the question's tests in the sandbox, as the last step of the
quality stage; failures leave."""

from __future__ import annotations

import numpy as np

from glan_utils.core.jsonl import iter_jsonl
from glan_utils.core.paths import CODE_CHECKS
from glan_utils.core.records import QAPair, TaxonomyNode
from glan_utils.data.quality_filter import filter_pairs
from glan_utils.runs.store import RunStore
from glan_utils.settings import QualityFilterSettings
from glan_utils.stages import pipeline
from glan_utils.stages.code_checks import check_code_pairs, program
from glan_utils.testing import OpenAIServer

QUESTION = (
    "Write a Python function `add(a, b)` that returns the sum of two numbers. It must pass these tests:\n"
    "```python\nassert add(2, 3) == 5\nassert add(-1, 1) == 0\n```"
)
CODE = "\n```python\ndef add(a, b):\n    return a {op} b\n```"
RIGHT = "We return the sum of the arguments, which is what the tests check." + CODE.format(op="+")
WRONG = "We return the product of the arguments, which the tests will reject." + CODE.format(op="*")


def pair(i: int, question: str, answer: str, discipline_id: str = "cs") -> QAPair:
    return QAPair(
        question_id=f"q{i}",
        syllabus_id="s",
        subject_id="sub",
        discipline_id=discipline_id,
        discipline="Computer Science",
        subject="Programming I",
        level="undergraduate",
        difficulty="basic",
        session_indices=[1],
        concepts=["functions"],
        question=question,
        answer=answer,
    )


def test_code_answers_run_against_the_questions_tests(make_settings):
    settings = make_settings("http://127.0.0.1:9/v1")
    pairs = [pair(0, QUESTION, RIGHT), pair(1, QUESTION, WRONG), pair(2, "What is a function?", RIGHT)]
    store = RunStore(settings.run_dir)
    store.append("answers", pairs)
    assert program(pairs[2].question, pairs[2].answer) is None  # no tests in the question: nothing to run

    counts = check_code_pairs(settings)
    assert counts == {"checked": 2, "passed": 1, "failed": 1, "already_checked": 0}
    rows = {row["pair_id"]: row["verification"] for row in iter_jsonl(settings.run_dir / CODE_CHECKS)}
    assert rows[pairs[0].id]["agreed"] is True and rows[pairs[1].id]["agreed"] is False
    assert "AssertionError" in rows[pairs[1].id]["detail"]
    assert check_code_pairs(settings)["already_checked"] == 2  # append-only, keyed by pair and program

    removed, summary = filter_pairs(
        (p.model_dump() for p in pairs), np.ones(3, bool), settings.run_dir, QualityFilterSettings(drop_flags=[])
    )
    assert removed.tolist() == [False, True, False] and summary["by_reason"] == {"verifier_disagreement": 1}


async def test_the_quality_stage_runs_the_code_verifier(make_settings):
    """`pipeline.run` (as `glan run` and `run_until` call it) checks the code: no notebook glue needed."""
    field = TaxonomyNode(name="Engineering", level="field", path=["Engineering"])
    sub = TaxonomyNode(name="Computing", level="subfield", parent_id=field.id, path=["Engineering", "Computing"])
    cs = TaxonomyNode(name="Computer Science", level="discipline", parent_id=sub.id, path=[*sub.path, "CS"])
    with OpenAIServer() as server:
        settings = make_settings(server.base_url)
        store = RunStore(settings.run_dir)
        store.append("taxonomy", [field, sub, cs])
        pairs = [pair(0, QUESTION, RIGHT, cs.id), pair(1, QUESTION, WRONG, cs.id)]
        store.append("answers", pairs)
        report = await pipeline.run(settings, "quality")
    assert report.extra["code_checks"] == {"checked": 2, "passed": 1, "failed": 1, "already_checked": 0}
    rows = {row["pair_id"]: row["verification"]["agreed"] for row in iter_jsonl(settings.run_dir / CODE_CHECKS)}
    assert rows == {pairs[0].id: True, pairs[1].id: False}
