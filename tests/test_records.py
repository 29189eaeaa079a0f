"""Record ids and stored field order are a storage format: resume and dedup across runs depend on them."""

from __future__ import annotations

import pydantic
import pytest

from glan_utils.core.records import QAPair, Question

METADATA = dict(
    syllabus_id="syl1",
    subject_id="sub1",
    discipline_id="dis1",
    field="Natural sciences",
    subfield="Physics",
    discipline="Mechanics",
    subject="Classical mechanics",
    level="undergraduate",
    difficulty="challenging",
    session_indices=[2, 5],
    concepts=["momentum", "energy"],
    language="English",
    question="Why is momentum conserved?",
)


def test_question_and_qa_pair_ids_are_stable():
    # Pinned from the records as first released; a change here orphans every stored run's records.
    question = Question(sample_index=3, **METADATA)
    pair = QAPair(question_id=question.id, answer="Because.", **METADATA)
    assert question.id == "42986b8bb306bb96"
    assert pair.id == "a2bba81b66f0bab4"


def test_ids_follow_identity_not_metadata():
    question = Question(sample_index=3, **METADATA)
    relabelled = Question(sample_index=3, **{**METADATA, "field": "Other", "level": "graduate"})
    assert relabelled.id == question.id
    assert Question(sample_index=4, **METADATA).id != question.id
    typed = Question(sample_index=3, question_type="derivation or proof", **METADATA)
    assert typed.id != question.id  # the type shapes the question; untyped ones keep their pinned ids
    pair = QAPair(question_id=question.id, answer="Because.", **METADATA)
    assert QAPair(question_id=question.id, answer="Other.", **METADATA).id != pair.id


def test_stored_field_order_is_parent_first():
    question = Question(sample_index=3, **METADATA)
    pair = QAPair(question_id=question.id, answer="Because.", **METADATA)
    placement = [*list(METADATA)[:-2], "question_type"]  # Placement's fields, the drawn type last
    assert list(question.model_dump()) == [
        "id",
        "task_id",
        "provenance",
        *placement,
        "sample_index",
        "language",
        "question",
    ]
    assert list(pair.model_dump()) == [
        "id",
        "task_id",
        "provenance",
        "question_id",
        *placement,
        "language",
        "question",
        "answer",
        "question_provenance",
    ]


def test_unknown_fields_are_rejected():
    with pytest.raises(pydantic.ValidationError):
        Question(sample_index=3, bogus=1, **METADATA)
