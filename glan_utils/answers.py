"""Paper §2.5: a separate call answers each question with full reasoning (paper: GPT-3.5-turbo, T=0.7).

The answer is free text, not JSON: a worked solution reads better unescaped. The answer model may differ from
the generation model (`answers.model`); the QA pair keeps every parent id, all metadata and both provenances.
"""

from __future__ import annotations

from functools import partial

from glan_utils.config import Settings
from glan_utils.generation import Caller, Reply
from glan_utils.prompts import RenderedPrompt, render
from glan_utils.records import Failure, Placement, QAPair, Question

STAGE = "answers"


def answer_prompt(question: Question, language: str) -> RenderedPrompt:
    return render(
        "answer",
        question=question.question,
        subject=question.subject,
        discipline=question.discipline,
        level=question.level,
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
        max_tokens=cfg.max_tokens,
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
