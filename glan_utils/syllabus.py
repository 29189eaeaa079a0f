"""Paper §2.3: one call per subject turns it into a syllabus of class sessions with key concepts.

The reply schema bounds the number of sessions (min..max from settings), concepts per session and every
string, and the parsed sessions are renumbered 1..n in reply order, so a model's own numbering can never
create gaps.
"""

from __future__ import annotations

from dataclasses import dataclass

from glan_utils.config import Settings
from glan_utils.generation import Tally, ask, provenance, syllabus_reply
from glan_utils.llm import LLMClient
from glan_utils.prompts import RenderedPrompt, render
from glan_utils.records import ClassSession, Failure, Subject, Syllabus

STAGE = "syllabi"


@dataclass(frozen=True)
class SyllabusTask:
    """Write the syllabus of one subject."""

    subject: Subject

    @property
    def id(self) -> str:
        return self.subject.id


def syllabus_prompt(subject: Subject, settings: Settings) -> RenderedPrompt:
    cfg = settings.syllabus
    return render(
        "syllabus",
        subject=subject.subject_name,
        discipline=subject.discipline,
        level=subject.level,
        subtopics=subject.subtopics,
        min_sessions=cfg.min_sessions,
        max_sessions=cfg.max_sessions,
        concepts=cfg.concepts_per_session,
        language=settings.language,
    )


async def write_syllabus(
    client: LLMClient, task: SyllabusTask, settings: Settings, tally: Tally
) -> list[Syllabus] | Failure:
    """One call; the validated reply becomes a Syllabus with sessions numbered from 1."""
    cfg, subject = settings.syllabus, task.subject
    prompt = syllabus_prompt(subject, settings)
    result = await ask(
        client,
        prompt,
        stage=STAGE,
        task_id=task.id,
        tally=tally,
        schema=syllabus_reply(cfg.min_sessions, cfg.max_sessions, cfg.concepts_per_session),
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
    )
    if isinstance(result, Failure):
        return result
    if any(not _unique(s.key_concepts) for s in result.parsed.sessions):  # type: ignore[union-attr]
        return Failure(stage=STAGE, task_id=task.id, reason="session without key concepts", raw=result.text)
    sessions = [
        ClassSession(
            index=i,
            title=s.title.strip(),
            description=s.description.strip(),
            key_concepts=_unique(s.key_concepts),
        )
        for i, s in enumerate(result.parsed.sessions, start=1)
    ]  # type: ignore[union-attr]
    return [
        Syllabus(
            subject_id=subject.id,
            discipline_id=subject.discipline_id,
            discipline=subject.discipline,
            subject_name=subject.subject_name,
            level=subject.level,
            sessions=sessions,
            provenance=provenance(result, prompt, [subject.id, subject.discipline_id]),
        )
    ]


def _unique(concepts: list[str]) -> list[str]:
    """Concepts stripped and de-duplicated (case-insensitively) in order."""
    seen: dict[str, str] = {}
    for concept in concepts:
        seen.setdefault(concept.strip().casefold(), concept.strip())
    seen.pop("", None)
    return list(seen.values())
