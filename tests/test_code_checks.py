"""The code verifier: answers with code are run against the question's tests in the sandbox; failures leave."""

from __future__ import annotations

import numpy as np

from glan_utils.core.jsonl import iter_jsonl
from glan_utils.core.records import QAPair
from glan_utils.data.quality import filter_pairs
from glan_utils.evaluation.code_checks import check_code_pairs, program
from glan_utils.runs.store import RunStore
from glan_utils.settings import QualityFilterSettings

QUESTION = (
    "Write a Python function `add(a, b)` that returns the sum of two numbers. It must pass these tests:\n"
    "```python\nassert add(2, 3) == 5\nassert add(-1, 1) == 0\n```"
)
CODE = "\n```python\ndef add(a, b):\n    return a {op} b\n```"
RIGHT = "We return the sum of the arguments, which is what the tests check." + CODE.format(op="+")
WRONG = "We return the product of the arguments, which the tests will reject." + CODE.format(op="*")


def pair(i: int, question: str, answer: str) -> QAPair:
    return QAPair(
        question_id=f"q{i}",
        syllabus_id="s",
        subject_id="sub",
        discipline_id="cs",
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
    rows = {row["pair_id"]: row["verification"] for row in iter_jsonl(settings.run_dir / "code_checks.jsonl")}
    assert rows[pairs[0].id]["agreed"] is True and rows[pairs[1].id]["agreed"] is False
    assert "AssertionError" in rows[pairs[1].id]["detail"]
    assert check_code_pairs(settings)["already_checked"] == 2  # append-only, keyed by pair and program

    removed, summary = filter_pairs(
        (p.model_dump() for p in pairs), np.ones(3, bool), settings.run_dir, QualityFilterSettings(drop_flags=[])
    )
    assert removed.tolist() == [False, True, False] and summary["by_reason"] == {"verifier_disagreement": 1}
