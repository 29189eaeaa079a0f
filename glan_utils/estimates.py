"""Before spending: the calls each stage will make, their cost, and the first prompt it would send.

Counts come from the previous stage's records when they exist, else from the configured sizes; tokens are the
first prompt's length and `max_tokens` (an upper bound). Before a stage's inputs exist, an example input
stands in.
"""

from __future__ import annotations

from typing import Any

from glan_utils import answers, homework, subjects, syllabus, taxonomy
from glan_utils.config import Settings
from glan_utils.ledger import Estimate, estimate
from glan_utils.prompts import RenderedPrompt
from glan_utils.records import ClassSession, Question, Subject, Syllabus, TaxonomyNode
from glan_utils.selection import count_kept, kept_disciplines, question_tasks
from glan_utils.store import RunStore

EXAMPLE_DISCIPLINE = TaxonomyNode(
    name="Linear Algebra", level="discipline", path=["Mathematics", "Algebra", "Linear Algebra"]
)


def _first(settings: Settings, stage: str) -> Any:
    store = RunStore(settings.run_dir)
    return next(iter(store.iter_records(stage)), None) if store.records_path(stage).exists() else None


def preview_prompt(settings: Settings, stage: str) -> RenderedPrompt:
    """The first prompt the stage would send (with an example input when the previous stage has not run)."""
    language = settings.language
    if stage == "taxonomy":
        return taxonomy.expand_prompt(
            taxonomy.ExpandTask(None, "field", settings.taxonomy.n_fields), language
        )
    discipline = next(iter(kept_disciplines(settings)), None) or EXAMPLE_DISCIPLINE
    if stage == "subjects":
        return subjects.subjects_prompt(discipline, settings)
    subject = _first(settings, subjects.STAGE) or Subject(
        discipline_id=discipline.id,
        discipline=discipline.name,
        subject_name="Vector Spaces",
        level="undergraduate",
    )
    if stage == "syllabi":
        return syllabus.syllabus_prompt(subject, settings)
    if stage == "questions":
        task = next(iter(question_tasks(settings)), None) or homework.QuestionTask(
            _example_syllabus(subject), homework.Draw(0, "basic", (1,), ("basis",))
        )
        return homework.question_prompt(task, language)
    question = _first(settings, homework.STAGE) or Question(
        syllabus_id="-",
        subject_id=subject.id,
        discipline_id=discipline.id,
        discipline=discipline.name,
        subject=subject.subject_name,
        level=subject.level,
        difficulty="basic",
        session_indices=[1],
        concepts=["basis"],
        sample_index=0,
        question="Show that the columns of an invertible matrix form a basis.",
    )
    return answers.answer_prompt(question, language)


def _example_syllabus(subject: Subject) -> Syllabus:
    return Syllabus(
        subject_id=subject.id,
        discipline_id=subject.discipline_id,
        discipline=subject.discipline,
        subject_name=subject.subject_name,
        level=subject.level,
        sessions=[ClassSession(index=1, title="Bases", key_concepts=["basis", "span"])],
    )


def planned_calls(settings: Settings, stage: str) -> int:
    """Calls the stage will make at most: from earlier records if present, else from the sizes."""
    tax, sub = settings.taxonomy, settings.subjects
    store = RunStore(settings.run_dir)
    n_disc = (
        len(kept_disciplines(settings))
        if store.records_path("taxonomy").exists()
        else tax.n_fields * tax.n_subfields * tax.n_disciplines
    )
    per_discipline = min(sub.max_subjects or sub.rounds * sub.per_round, sub.rounds * sub.per_round)
    n_subjects = (
        count_kept(settings, subjects.STAGE)
        if store.records_path(subjects.STAGE).exists()
        else n_disc * per_discipline
    )
    n_syllabi = (
        count_kept(settings, syllabus.STAGE) if store.records_path(syllabus.STAGE).exists() else n_subjects
    )
    n_questions = (
        count_kept(settings, homework.STAGE)
        if store.records_path(homework.STAGE).exists()
        else n_syllabi * settings.homework.questions_per_syllabus
    )
    return {
        "taxonomy": 0 if tax.source else 1 + tax.n_fields + tax.n_fields * tax.n_subfields,
        "subjects": n_disc * sub.rounds,
        "syllabi": n_subjects,
        "questions": n_syllabi * settings.homework.questions_per_syllabus,
        "answers": n_questions,
    }[stage]


def estimate_stage(settings: Settings, stage: str) -> Estimate:
    """Calls x (first prompt's tokens, max_tokens) x price: an upper bound, shown before spending."""
    max_tokens = {
        "taxonomy": settings.taxonomy.max_tokens,
        "subjects": settings.subjects.max_tokens,
        "syllabi": settings.syllabus.max_tokens,
        "questions": settings.homework.max_tokens,
        "answers": settings.answers.max_tokens,
    }[stage]
    model = (settings.answers.model if stage == "answers" else None) or settings.llm.model or "embedded"
    prompt_chars = sum(len(m["content"]) for m in preview_prompt(settings, stage).messages)
    return estimate(
        planned_calls(settings, stage), prompt_chars // 4 + 1, max_tokens, model, settings.llm.prices
    )
