"""Paper §2.5: a separate call answers each question with full reasoning (paper: GPT-3.5-turbo, T=0.7).

The answer is free text, not JSON: a worked solution reads better unescaped. The user turn is the bare question,
exactly as it will be in the training data (no "a graduate student asks" framing, which invites "As a graduate
student..." openers); the system turn makes the model an expert tutor and adapts the form to the question type
(runnable code for code, a marked final answer where there is one). The answer model may differ from the
generation model (`answers.model`); the QA pair keeps every parent id, all metadata and both provenances.
"""

from __future__ import annotations

from functools import partial

from glan_utils.core.records import Failure, Placement, QAPair, Question
from glan_utils.llm.prompts import RenderedPrompt, render
from glan_utils.settings import Settings
from glan_utils.stages.base import Caller, Reply
from glan_utils.stages.bounds import budget
from glan_utils.stages.questions import current_questions
from glan_utils.stages.registry import Plan, Stage, StageReport, finish, run_pending
from glan_utils.stages.selection import count_kept, first_record
from glan_utils.stages.syllabi import example_subject

NAME = "answers"


def answer_prompt(question: Question | QAPair, language: str) -> RenderedPrompt:
    """The answer prompt of a question (a QA pair carries the same text and placement, for a second answer)."""
    return render(
        "answers",
        question=question.question,
        discipline=question.discipline,
        question_type=question.question_type,
        language=language,
    )


async def write_answer(caller: Caller, question: Question, settings: Settings) -> list[QAPair] | Failure:
    """One call per question (the question is its own task); the reply text is the answer."""
    cfg = settings.answers
    return await caller.generate(
        question.id,
        answer_prompt(question, settings.language),
        partial(_pair, question),
        model=cfg.model,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        **budget(settings, cfg),
    )


def _pair(q: Question, reply: Reply) -> list[QAPair]:
    """The QA pair: the question's metadata, the answer, both provenances and every parent id."""
    return [
        QAPair(
            question_id=q.id,
            answer=reply.text.strip(),
            question_provenance=q.provenance,
            provenance=reply.provenance([q.id, q.syllabus_id, q.subject_id, q.discipline_id]),
            **q.model_dump(include={*Placement.model_fields, "language", "question"}),
        )
    ]


async def run(settings: Settings) -> StageReport:
    """One answer per question of the current plan; each question is its own task, so resume is by its id."""

    def total() -> int:
        return sum(1 for _ in current_questions(settings))

    return finish(
        settings,
        await run_pending(settings, NAME, NAME, lambda: current_questions(settings), write_answer, total),
    )


def example_question(settings: Settings) -> Question:
    """The run's first question, or an example before the questions stage ran."""
    subject = example_subject(settings)
    return first_record(settings, Question) or Question(
        syllabus_id="-",
        subject_id=subject.id,
        discipline_id=subject.discipline_id,
        discipline=subject.discipline,
        subject=subject.subject_name,
        level=subject.level,
        difficulty="basic",
        session_indices=[1],
        concepts=["basis"],
        sample_index=0,
        question="Show that the columns of an invertible matrix form a basis.",
    )


STAGE = Stage(
    record=QAPair,
    run=run,
    plan=lambda settings, questions: Plan(questions, questions),
    preview=lambda settings: answer_prompt(example_question(settings), settings.language),
    count=lambda settings: count_kept(settings, NAME),
    notebook="04_questions",
    needs="questions",
    typical_tokens=400,
)
