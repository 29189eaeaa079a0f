"""Subjects: sampling rounds as separate cached calls, and the pure merge of near-duplicate names."""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path

import pydantic
import pytest

from glan_utils.core.records import TaxonomyNode
from glan_utils.runs.store import RunStore
from glan_utils.stages import pipeline
from glan_utils.stages.subjects import (
    SubjectProposal,
    SubjectRound,
    known_names,
    merge_rounds,
    proposal_reply,
    round_count,
    similarity,
    subjects_prompt,
)

TAXONOMY = str(Path(__file__).parent / "data" / "taxonomy" / "paths.csv")
PAIRS = Path(__file__).parent / "data" / "course_pairs.csv"


def round_of(discipline: str, number: int, *names: str) -> SubjectRound:
    return SubjectRound(
        discipline_id=f"d-{discipline}",
        discipline=discipline,
        round=number,
        proposals=[SubjectProposal(subject_name=n, level="undergraduate", subtopics=[f"{n} basics"]) for n in names],
    )


def test_similarity_is_word_level():
    assert similarity("Linear Algebra", "linear  algebra.") == 1.0
    assert similarity("Algebra, Linear", "Linear Algebra") == 1.0
    assert similarity("Organic Chemistry", "Inorganic Chemistry") == 0.5
    assert similarity("Thermodynamik", "Thermodynamik") == 1.0


def test_merge_folds_near_duplicates_and_keeps_round_provenance():
    rounds = [
        round_of("math", 0, "Linear Algebra", "Calculus I"),
        round_of("math", 1, "linear algebra", "Real Analysis"),
        round_of("math", 2, "Algebra, Linear", "Calculus II"),
        round_of("chem", 0, "Organic Chemistry", "Inorganic Chemistry"),
    ]
    result = merge_rounds(rounds, threshold=0.85)
    by_name = {s.subject_name: s for s in result.subjects}
    assert set(by_name) == {
        "Linear Algebra",
        "Calculus I",
        "Real Analysis",
        "Calculus II",
        "Organic Chemistry",
        "Inorganic Chemistry",
    }
    assert by_name["Linear Algebra"].rounds == [0, 1, 2] and by_name["Real Analysis"].rounds == [1]
    assert by_name["Linear Algebra"].subtopics == [
        "Linear Algebra basics",
        "linear algebra basics",
        "Algebra, Linear basics",
    ]
    assert result.proposals == 8 and result.merged == 2
    shuffled = rounds[:]
    random.Random(3).shuffle(shuffled)  # order of arrival (concurrency) must not change the outcome
    assert [s.id for s in merge_rounds(shuffled, 0.85).subjects] == [s.id for s in result.subjects]


def test_cap_takes_the_rounds_in_turn_most_proposed_first():
    rounds = [
        round_of("math", 0, "Topology", "Algebra"),
        round_of("math", 1, "Algebra", "Geometry"),
        round_of("math", 2, "Algebra", "Geometry"),
    ]
    assert [s.subject_name for s in merge_rounds(rounds, 0.85, max_subjects=2).subjects] == [
        "Algebra",
        "Geometry",
    ]


def test_every_round_reaches_the_capped_subjects():
    """10 rounds of 40 distinct subjects capped at 150: a first-come cap kept rounds 0-3 only (40/40/40/30)."""
    adjectives = [
        "Coastal",
        "Urban",
        "Digital",
        "Medieval",
        "Clinical",
        "Tropical",
        "Arctic",
        "Rural",
        "Sonic",
        "Nordic",
    ]
    nouns = [
        "Ethics",
        "Law",
        "Design",
        "Ecology",
        "Economics",
        "Imaging",
        "Analytics",
        "Policy",
        "Acoustics",
        "Robotics",
        "Forensics",
        "Hydrology",
    ]
    names = [f"{a} {n} {k}" for k in "ABCD" for a in adjectives for n in nouns][:400]
    rounds = [round_of("d", r, *names[40 * r : 40 * (r + 1)]) for r in range(10)]
    kept = merge_rounds(rounds, 0.85, max_subjects=150).subjects
    assert Counter(s.rounds[0] for s in kept) == dict.fromkeys(range(10), 15)
    assert [s.subject_name for s in kept[:3]] == [names[0], names[40], names[80]]  # round after round


def test_each_round_asks_for_its_share_of_the_cap(make_settings):
    paper = make_settings("http://127.0.0.1:9/v1", {"subjects.rounds": 10, "subjects.max_subjects": 150})
    assert round_count(paper) == 19  # 150 / 10 rounds + 25% for merged duplicates, under per_round (40)
    assert round_count(paper.model_copy(update={"subjects": paper.subjects.model_copy(update={"per_round": 12})})) == 12
    uncapped = paper.subjects.model_copy(update={"max_subjects": None})
    assert round_count(paper.model_copy(update={"subjects": uncapped})) == 40
    assert len(set(paper.subjects.focuses)) == 10 == paper.subjects.rounds  # ten distinct focuses


async def test_rounds_are_separate_calls_at_sampling_temperature(openai_server, make_settings):
    settings = make_settings(
        openai_server.base_url,
        {"taxonomy.source": TAXONOMY, "subjects.rounds": 3, "subjects.per_round": 4, "subjects.max_subjects": None},
    )
    await pipeline.run(settings, "taxonomy")
    report = await pipeline.run(settings, "subjects")
    assert openai_server.count == 5 * 3 == report.llm.calls
    assert all(r["temperature"] == 1.0 and r["top_p"] == 0.95 for r in openai_server.requests)
    store = RunStore(settings.run_dir)
    rounds = list(store.iter_records("subject_rounds", SubjectRound))
    assert sorted(r.round for r in rounds) == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]
    assert len({r.provenance.cache_key for r in rounds}) == 15  # sample_index makes each round its own call
    subjects = list(store.iter_records("subjects"))
    assert report.extra["duplicates_merged"] == report.extra["proposals"] - len(subjects)
    assert report.extra["proposals"] == sum(len(r.proposals) for r in rounds)
    for discipline in {s.discipline_id for s in subjects}:
        assert {n for s in subjects if s.discipline_id == discipline for n in s.rounds} == {0, 1, 2}
    again = await pipeline.run(settings, "subjects")
    assert openai_server.count == 15 and again.extra["subjects_new"] == 0


def test_round_prompts_carry_a_focus_and_the_names_already_collected(make_settings):
    settings = make_settings("http://127.0.0.1:9/v1")
    discipline = TaxonomyNode(name="Economics", level="discipline", path=["Social", "Econ", "Economics"])
    earlier = [round_of(discipline.name, 0, "Microeconomics"), round_of(discipline.name, 1, "Econometrics")]
    for rec in earlier:
        rec.discipline_id = discipline.id
    known = known_names(earlier, discipline.id, before=1)
    assert known == ["Microeconomics (undergraduate)"]  # only rounds before this one
    first, second = (subjects_prompt(discipline, settings, r, known_names(earlier, discipline.id, r)) for r in (0, 1))
    focuses = settings.subjects.focuses
    assert focuses[0] in first.messages[-1]["content"] and focuses[1] in second.messages[-1]["content"]
    assert "Microeconomics" not in first.messages[-1]["content"]
    assert "Microeconomics (undergraduate)" in second.messages[-1]["content"]
    assert f"List up to {round_count(settings)} subjects" in first.messages[-1]["content"]
    assert "stop when you run out" in first.messages[-1]["content"]
    assert settings.subjects.per_round == 40  # the remote profile's default: the most a round asks for


def test_level_must_come_from_the_vocabulary():
    reply = proposal_reply(("high school", "graduate"))
    assert reply.model_validate({"subject_name": "Calculus", "level": " Graduate "}).level == "graduate"
    with pytest.raises(pydantic.ValidationError):
        reply.model_validate({"subject_name": "Calculus", "level": "2,"})
    assert reply.model_json_schema()["properties"]["level"]["enum"] == ["high school", "graduate"]


def test_merge_keeps_levels_apart():
    rounds = [
        SubjectRound(
            discipline_id="d",
            discipline="Math",
            round=r,
            proposals=[SubjectProposal(subject_name="Calculus", level=level)],
        )
        for r, level in enumerate(["high school", "undergraduate introductory", "high school"])
    ]
    merged = merge_rounds(rounds, 0.85, by_embedding=False)
    assert sorted((s.level, s.rounds) for s in merged.subjects) == [
        ("high school", [0, 2]),
        ("undergraduate introductory", [1]),
    ]
    assert len({s.id for s in merged.subjects}) == 2  # (name, level) is the identity


def course_pairs() -> list[tuple[str, str, bool]]:
    with PAIRS.open(encoding="utf-8") as f:
        return [(row["a"], row["b"], row["same"] == "1") for row in csv.DictReader(f)]


def merged_pairs(threshold: float) -> tuple[float, float]:
    """(share of true paraphrases merged, share of distinct courses merged) by the stage's own merge."""
    pairs = course_pairs()
    outcomes = []
    for number, (a, b, same) in enumerate(pairs):
        rec = SubjectRound(
            discipline_id=f"pair{number}",
            discipline="x",
            round=0,
            proposals=[SubjectProposal(subject_name=n, level="graduate") for n in (a, b)],
        )
        outcomes.append((same, merge_rounds([rec], threshold, by_embedding=True).merged == 1))
    true = [m for same, m in outcomes if same]
    false = [m for same, m in outcomes if not same]
    return sum(true) / len(true), sum(false) / len(false)


def test_embedding_merge_threshold_on_labelled_course_pairs(make_settings):
    pairs = course_pairs()
    assert len(pairs) >= 60 and 25 <= sum(s for *_, s in pairs) <= len(pairs) - 25
    threshold = make_settings("http://127.0.0.1:9/v1").subjects.merge_threshold
    recall, false_merges = merged_pairs(threshold)
    print(f"\nmerge at {threshold}: {recall:.1%} of paraphrases merged, {false_merges:.1%} of distinct courses merged")
    assert recall >= 0.90 and false_merges <= 0.05
    loose, _ = merged_pairs(0.99)
    assert loose < 0.9  # the threshold matters: near-exact matching misses paraphrases
