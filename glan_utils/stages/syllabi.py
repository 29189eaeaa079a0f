"""Paper §2.3: one call per subject turns it into a syllabus of class sessions with key concepts.

The reply schema bounds the number of sessions (min..max from settings), concepts per session and every
string, and the parsed sessions are renumbered 1..n in reply order, so a model's own numbering can never
create gaps.
"""

from __future__ import annotations

from functools import lru_cache, partial

from pydantic import BaseModel, Field, create_model

from glan_utils.core.records import ClassSession, Failure, Subject, Syllabus
from glan_utils.llm.prompts import RenderedPrompt, render
from glan_utils.settings import Settings
from glan_utils.stages.base import NAME_MAX, TEXT_MAX, Caller, Reply, ShortText
from glan_utils.stages.registry import Plan, Stage, StageReport, run_per_record
from glan_utils.stages.selection import first_record
from glan_utils.stages.subjects import EXAMPLE_DISCIPLINE

NAME = "syllabi"


@lru_cache(maxsize=64)
def syllabus_reply(min_sessions: int, max_sessions: int, concepts: int) -> type[BaseModel]:
    """Reply schema of a syllabus: min..max sessions, sessions of title, description, 1..concepts concepts."""
    session = create_model(
        "SessionReply",
        title=(str, Field(min_length=1, max_length=NAME_MAX)),
        description=(str, Field("", max_length=TEXT_MAX)),
        key_concepts=(list[ShortText], Field(min_length=1, max_length=concepts)),
    )
    return create_model(
        "SyllabusReply",
        sessions=(
            list[session],
            Field(
                min_length=min_sessions,  # type: ignore[valid-type]
                max_length=max(min_sessions, max_sessions),
            ),
        ),
    )


def syllabus_prompt(subject: Subject, settings: Settings) -> RenderedPrompt:
    cfg = settings.syllabi
    return render(
        "syllabi",
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
    cfg = settings.syllabi
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


async def run(settings: Settings) -> StageReport:
    """One syllabus per kept subject; each subject is its own task, so resume is by its id."""
    return await run_per_record(settings, NAME, "subjects", write_syllabus)


def example_subject(settings: Settings) -> Subject:
    """The run's first subject, or an example before the subjects stage ran."""
    return first_record(settings, Subject) or Subject(
        discipline_id=EXAMPLE_DISCIPLINE.id,
        discipline=EXAMPLE_DISCIPLINE.name,
        subject_name="Vector Spaces",
        level="undergraduate",
    )


STAGE = Stage(
    record=Syllabus,
    run=run,
    plan=lambda settings, subjects: Plan(subjects, subjects),
    preview=lambda settings: syllabus_prompt(example_subject(settings), settings),
    notebook="03_syllabi",
)
