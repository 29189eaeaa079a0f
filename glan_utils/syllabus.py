"""Paper §2.3: one call per subject turns it into a syllabus of class sessions with key concepts.

The reply schema bounds the number of sessions (min..max from settings), concepts per session and every
string, and the parsed sessions are renumbered 1..n in reply order, so a model's own numbering can never
create gaps.
"""

from __future__ import annotations

from functools import partial

from glan_utils.config import Settings
from glan_utils.generation import Caller, Reply, syllabus_reply
from glan_utils.prompts import RenderedPrompt, render
from glan_utils.records import ClassSession, Failure, Subject, Syllabus

STAGE = "syllabi"


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


async def write_syllabus(caller: Caller, subject: Subject, settings: Settings) -> list[Syllabus] | Failure:
    """One call per subject (the subject is its own task)."""
    cfg = settings.syllabus
    return await caller.generate(
        subject.id,
        syllabus_prompt(subject, settings),
        partial(_syllabus, subject),
        schema=syllabus_reply(cfg.min_sessions, cfg.max_sessions, cfg.concepts_per_session),
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
    )


def _syllabus(subject: Subject, reply: Reply) -> list[Syllabus] | Failure:
    """The validated reply as a Syllabus with sessions numbered from 1."""
    if any(not _unique(s.key_concepts) for s in reply.parsed.sessions):
        return reply.failure("session without key concepts")
    sessions = [
        ClassSession(
            index=i,
            title=s.title.strip(),
            description=s.description.strip(),
            key_concepts=_unique(s.key_concepts),
        )
        for i, s in enumerate(reply.parsed.sessions, start=1)
    ]
    return [
        Syllabus(
            subject_id=subject.id,
            discipline_id=subject.discipline_id,
            discipline=subject.discipline,
            subject_name=subject.subject_name,
            level=subject.level,
            sessions=sessions,
            provenance=reply.provenance([subject.id, subject.discipline_id]),
        )
    ]


def _unique(concepts: list[str]) -> list[str]:
    """Concepts stripped and de-duplicated (case-insensitively) in order."""
    seen: dict[str, str] = {}
    for concept in concepts:
        seen.setdefault(concept.strip().casefold(), concept.strip())
    seen.pop("", None)
    return list(seen.values())
