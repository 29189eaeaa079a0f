"""Sentence embeddings from the PyPI model package: paraphrased course names are close, unrelated ones far."""

from __future__ import annotations

import numpy as np

from glan_utils.llm import embeddings


def test_paraphrases_are_close_and_vectors_are_cached(tmp_path, monkeypatch) -> None:
    names = ["Introduction to Microeconomics", "Principles of Microeconomics", "Organic Chemistry"]
    cache = tmp_path / "vectors.sqlite"
    vectors = embeddings.embed(names, cache_path=cache)
    assert vectors.shape == (3, embeddings.DIMENSIONS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    similar = embeddings.cosine_matrix(vectors)
    assert similar[0, 1] > 0.8 > 0.3 > similar[0, 2]

    def no_model() -> None:
        raise AssertionError("a cached text was embedded again")

    monkeypatch.setattr(embeddings, "_model", no_model)
    again = embeddings.embed(list(reversed(names)), cache_path=cache)
    assert np.allclose(again[::-1], vectors)
