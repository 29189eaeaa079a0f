"""Duplicate removal: signatures identical to datasketch, planted duplicates removed, distinct texts kept."""

from __future__ import annotations

import random

import numpy as np
from datasketch import MinHash

from glan_utils.data.dedup import EXACT, KEPT, NEAR, MinHasher, find_duplicates
from glan_utils.data.hashing import ngram_hashes, sequence_hashes, tokenize
from glan_utils.settings import DedupSettings


def _questions(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    vocab = [f"term{i}" for i in range(3000)]
    return [" ".join(rng.choice(vocab) for _ in range(40)) + "?" for _ in range(n)]


def test_signatures_match_datasketch():
    texts = [
        "What is the derivative of x^2 + 3x, and why?",
        "Explain the Krebs cycle to a first-year student.",
        "Hi",
    ]
    grams, doc = ngram_hashes(*tokenize(texts), 3, short_as_unigrams=True)
    signatures = MinHasher(64, seed=7).signatures(grams, doc, len(texts))
    for i in range(len(texts)):
        reference = MinHash(num_perm=64, seed=7, hashfunc=lambda h: int(h) & 0xFFFFFFFF)
        reference.update_batch(list(grams[doc == i]))
        assert np.array_equal(reference.hashvalues, signatures[i])


def test_normalisation_ignores_case_punctuation_and_spacing():
    tokens, doc = tokenize(["What is 2+2?", "what  is 2+2", "is what 2+2"])
    keys = sequence_hashes(tokens, doc, 3)
    assert keys[0] == keys[1] != keys[2]


def test_planted_duplicates_removed_and_clean_records_kept(tmp_path):
    questions = _questions(300)
    twin = questions[10].split()
    twin[7] = "different"
    questions.append(" ".join(twin))  # near duplicate of 10 (1 word of 40 changed)
    questions.append(questions[20].upper().replace("?", " !"))  # exact duplicate of 20 after normalisation
    result = find_duplicates(iter(questions), DedupSettings(chunk_size=64), tmp_path)
    assert result.reason[300] == NEAR and result.dup_of[300] == 10 and result.similarity[300] >= 0.8
    assert result.reason[301] == EXACT and result.dup_of[301] == 20
    assert result.count(KEPT) == 300
    assert list(tmp_path.iterdir()) == []  # signatures and band files are cleaned up


def test_threshold_and_switches_are_honoured(tmp_path):
    questions = _questions(50)
    half = questions[0].split()
    questions.append(" ".join(half[:25] + _questions(1, seed=9)[0].split()[:15]))  # ~40% overlap: not a duplicate
    questions.append(questions[3])
    loose = find_duplicates(questions, DedupSettings(), tmp_path / "a")
    assert loose.reason[50] == KEPT and loose.reason[51] == EXACT
    off = find_duplicates(questions, DedupSettings(exact=False, near=False), tmp_path / "b")
    assert off.count(KEPT) == len(questions)
