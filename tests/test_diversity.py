"""Quality and diversity per taxonomy node, with real all-MiniLM-L6-v2 embeddings, and the quality figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from glan_utils.data.quality_filter import filter_pairs, semantic_duplicates
from glan_utils.llm.embeddings import embed
from glan_utils.settings import QualityFilterSettings
from glan_utils.views import diversity, quality_plots

PHYSICS = [
    "What is the momentum of a 2 kg ball moving at 3 m/s?",
    "Find the momentum of a ball of mass 2 kg travelling at 3 m/s.",  # a paraphrase of the first
    "Explain why the sky appears blue using Rayleigh scattering.",
    "Derive the period of a simple pendulum for small oscillations.",
]
CHEMISTRY = [
    "Balance the equation for the combustion of methane in oxygen.",
    "What determines the boiling point of a liquid at a given pressure?",
    "Why does table salt dissolve in water but not in oil?",
]
ANSWER = "We apply the definition and the relation between the quantities, so the result follows as shown."


def frame() -> pd.DataFrame:
    rows = []
    for discipline, texts in (("Physics", PHYSICS), ("Chemistry", CHEMISTRY)):
        for i, text in enumerate(texts):
            rows.append(
                {
                    "id": f"{discipline}{i}",
                    "syllabus_id": f"syl-{discipline}",
                    "discipline": discipline,
                    "subject": f"{discipline} I",
                    "difficulty": "challenging" if i % 2 else "basic",
                    "question_type": None,
                    "concepts": ["a", "b"] if discipline == "Physics" else ["a"],
                    "question": text,
                    "answer": ANSWER,
                    "flags": ["greeting"] if i == 2 else [],
                    "score": 2.0 + i,
                    "difficulty_fit": 4 if i == 1 else 2,
                    "rationale": f"rationale {i}",
                    "verified": i < 2,
                    "agreed": i == 0 if i < 2 else None,
                }
            )
    return pd.DataFrame(rows)


def syllabi() -> pd.DataFrame:
    sessions = [{"key_concepts": ["a", "b"]}, {"key_concepts": ["c", "d"]}]
    return pd.DataFrame({"id": ["syl-Physics", "syl-Chemistry"], "sessions": [sessions, sessions]})


@pytest.mark.timeout(120)  # loading sentence-transformers on 2 cores takes ~20 s
def test_node_table_measures_quality_and_diversity_per_discipline(make_settings):
    settings = make_settings("http://127.0.0.1:9/v1")
    table = diversity.node_table(frame(), syllabi(), settings).set_index("discipline")
    physics, chemistry = table.loc["Physics"], table.loc["Chemistry"]
    assert physics["semantic_near_duplicate_rate"] == 0.25 and chemistry["semantic_near_duplicate_rate"] == 0
    assert physics["concept_coverage"] == 0.5 and chemistry["concept_coverage"] == 0.25
    assert physics["mean_score"] == 3.5 and physics["flagged_share"] == 0.25
    assert physics["verifier_agreement"] == chemistry["verifier_agreement"] == 0.5
    assert physics["labelled_challenging"] == 0.5 and physics["judged_challenging"] == 0.25
    vectors = embed(PHYSICS)
    sims = vectors @ vectors.T
    brute = 1 - sims[~np.eye(4, dtype=bool)].mean()
    assert physics["mean_cosine_distance"] == pytest.approx(brute, abs=1e-5)

    lowest = diversity.lowest_pairs(frame(), 3)
    assert lowest["score"].tolist() == [2.0, 2.0, 3.0] and lowest["rationale"][0] == "rationale 0"
    figures = quality_plots.quality_plots(settings, table.reset_index(), lowest)
    heat = figures["quality_heatmap"].data[0]
    assert list(heat.y) == ["Chemistry", "Physics"] and "semantically distinct" in heat.x
    assert (settings.run_dir / "plots" / "quality_heatmap.html").stat().st_size > 1000


def test_semantic_duplicates_keep_the_first_of_each_group():
    vectors = np.array([[1, 0], [0.99, 0.141], [0, 1], [0.1, 0.995], [1, 0]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert semantic_duplicates(vectors, 0.95, block=2).tolist() == [-1, 0, -1, 2, 0]


def test_data_set_drops_semantic_near_duplicates_when_asked(tmp_path):
    pairs = [
        {
            "id": f"p{i}",
            "question_id": f"q{i}",
            "question": q,
            "answer": ANSWER * 2,
            "difficulty": "basic",
            "discipline": "Physics",
            "concepts": ["z"],
        }
        for i, q in enumerate(PHYSICS)
    ]
    alive = np.ones(len(pairs), bool)
    off, _ = filter_pairs(pairs, alive, tmp_path, QualityFilterSettings())
    on, summary = filter_pairs(pairs, alive, tmp_path, QualityFilterSettings(semantic_dedup=True), embedder=embed)
    assert not off.any() and on.tolist() == [False, True, False, False]
    assert summary["by_reason"] == {"semantic_near_duplicate": 1}
