"""Distinctness of questions per subject (near-duplicate fraction) and the plots built from a run's tables."""

from __future__ import annotations

import pandas as pd

from glan_utils.core.records import Question
from glan_utils.views import plots
from glan_utils.views.tables import distinctness, near_duplicate_ids


def question(subject: str, text: str, index: int) -> Question:
    return Question(
        syllabus_id="y",
        subject_id=subject,
        discipline_id="d",
        discipline="Physics",
        subject=subject,
        level="ug",
        difficulty="basic",
        session_indices=[1],
        concepts=["c"],
        sample_index=index,
        question=text,
    )


def test_near_duplicates_are_found_and_distinct_texts_are_not():
    texts = {
        "a": "Compute the focal length of a thin convex lens with radii 10 cm and 20 cm in air.",
        "b": "Compute the focal length of a thin convex lens with radii 10 cm and 20 cm in air!",
        "c": "Explain why the sky appears blue, using Rayleigh scattering and the wavelength of light.",
    }
    assert near_duplicate_ids(texts) == {"a", "b"}


def test_distinctness_per_subject():
    reused = "Derive the period of a simple pendulum of length L for small oscillations in uniform gravity."
    rows = [question("optics", f"Question {i} about lens number {i} and mirror type {i * 7}", i) for i in range(4)]
    rows += [question("mechanics", reused, i) for i in range(3)] + [question("mechanics", "What is torque?", 9)]
    table = distinctness(rows).set_index("subject")
    assert table.loc["optics", "distinct_fraction"] == 1.0
    assert table.loc["mechanics", "near_duplicates"] == 3 and table.loc["mechanics", "distinct_fraction"] == 0.25


def test_generation_plots_are_saved_as_html(make_settings):
    settings = make_settings("http://127.0.0.1:9/v1")
    qa = pd.DataFrame(
        {
            "field": ["Sci", "Sci", "Hum"],
            "subfield": ["Phys", "Phys", "Hist"],
            "discipline": ["Optics", "Optics", "Ancient"],
            "subject": ["Lenses", "Mirrors", "Rome"],
            "difficulty": ["basic", "challenging", "basic"],
            "concepts": [["a"], ["a", "b"], ["c"]],
            "answer": ["one two", "one two three", "four"],
        }
    )
    syllabi = pd.DataFrame({"discipline": ["Optics", "Ancient"], "sessions": [[{}, {}], [{}]]})
    subjects = pd.DataFrame({"discipline": ["Optics", "Ancient"], "level": ["ug", "graduate"]})
    figures = plots.generation_plots(
        settings, {"subjects": subjects, "syllabi": syllabi, "questions": qa, "answers": qa}
    )
    assert set(figures) == {
        "subject_levels",
        "sessions_per_syllabus",
        "concepts_per_question",
        "coverage",
        "difficulty_mix",
        "answer_lengths",
        "pairs_vs_target",
    }
    saved = {p.stem for p in plots.plots_dir(settings).glob("*.html")}
    assert saved == set(figures) and (plots.plots_dir(settings) / "plotly.min.js").exists()
    bars = {t.name: dict(zip(t.x, t.y, strict=True)) for t in figures["pairs_vs_target"].data}
    per_syllabus = settings.questions.questions_per_syllabus
    assert bars == {
        "pairs": {"Optics": 2, "Ancient": 1},
        "target": {"Optics": per_syllabus, "Ancient": per_syllabus},
    }
