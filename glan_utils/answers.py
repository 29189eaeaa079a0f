"""Paper §2.5: a separate call answers each question with full reasoning (paper: GPT-3.5-turbo, T=0.7).

The answer is free text, not JSON: a worked solution reads better unescaped. The answer model may differ from
the generation model (`answers.model`); the QA pair keeps every parent id, all metadata and both provenances.
"""

from __future__ import annotations

from dataclasses import dataclass

from glan_utils.config import Settings
from glan_utils.generation import Tally, ask, provenance
from glan_utils.llm import LLMClient
from glan_utils.prompts import RenderedPrompt, render
from glan_utils.records import Failure, QAPair, Question

STAGE = "answers"


@dataclass(frozen=True)
class AnswerTask:
    """Answer one question."""

    question: Question

    @property
    def id(self) -> str:
        return self.question.id


def answer_prompt(question: Question, language: str) -> RenderedPrompt:
    return render(
        "answer",
        question=question.question,
        subject=question.subject,
        discipline=question.discipline,
        level=question.level,
        language=language,
    )


async def write_answer(
    client: LLMClient, task: AnswerTask, settings: Settings, tally: Tally
) -> list[QAPair] | Failure:
    """One call; the reply text is the answer."""
    cfg, q = settings.answers, task.question
    prompt = answer_prompt(q, settings.language)
    result = await ask(
        client,
        prompt,
        stage=STAGE,
        task_id=task.id,
        tally=tally,
        model=cfg.model,
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
    )
    if isinstance(result, Failure):
        return result
    metadata = q.model_dump(
        include={
            "syllabus_id",
            "subject_id",
            "discipline_id",
            "field",
            "subfield",
            "discipline",
            "subject",
            "level",
            "difficulty",
            "session_indices",
            "concepts",
            "language",
            "question",
        }
    )
    return [
        QAPair(
            question_id=q.id,
            answer=(result.text or "").strip(),
            question_provenance=q.provenance,
            provenance=provenance(result, prompt, [q.id, q.syllabus_id, q.subject_id, q.discipline_id]),
            **metadata,
        )
    ]
