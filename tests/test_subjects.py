"""Subjects: sampling rounds as separate cached calls, and the pure merge of near-duplicate names."""

from __future__ import annotations

import random
from pathlib import Path

from glan_utils.runs.store import RunStore
from glan_utils.stages import pipeline
from glan_utils.stages.subjects import SubjectProposal, SubjectRound, merge_rounds, similarity

TAXONOMY = str(Path(__file__).parent / "data" / "taxonomy" / "paths.csv")


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


def test_cap_keeps_the_most_proposed():
    rounds = [
        round_of("math", 0, "Topology", "Algebra"),
        round_of("math", 1, "Algebra", "Geometry"),
        round_of("math", 2, "Algebra", "Geometry"),
    ]
    assert [s.subject_name for s in merge_rounds(rounds, 0.85, max_subjects=2).subjects] == [
        "Algebra",
        "Geometry",
    ]


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
