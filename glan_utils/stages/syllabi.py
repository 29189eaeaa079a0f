"""Paper §2.3: one call per subject turns it into a syllabus of class sessions with key concepts.

The syllabus has the course parts the paper's homework prompt relies on (overview, objectives, outcomes,
prerequisites) and sessions that each have a description and specific, testable key concepts. The reply schema
bounds the number of sessions (min..max from settings), concepts per session and every string, and the parsed
sessions are renumbered 1..n in reply order, so a model's own numbering can never create gaps. Sampling is the
paper's (T=1.0, top-p 0.95); `syllabi.structure: paper` writes prose first and extracts it (stages/extraction).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache, partial
from typing import Annotated

from pydantic import BaseModel, Field, create_model

from glan_utils.core.records import ClassSession, Failure, Subject, Syllabus
from glan_utils.llm.prompts import RenderedPrompt, render
from glan_utils.settings import Settings
from glan_utils.stages import extraction
from glan_utils.stages.base import NAME_MAX, TEXT_MAX, Caller, Reply, ShortText
from glan_utils.stages.bounds import budget
from glan_utils.stages.registry import Plan, Stage, StageReport, run_per_record
from glan_utils.stages.selection import first_record, kept_records
from glan_utils.stages.subjects import EXAMPLE_DISCIPLINE, course_words

NAME = "syllabi"
OVERVIEW_MAX = 1500
SIBLINGS = 8
"""Other courses of its discipline a syllabus prompt names, so near-identical courses get distinct syllabi."""
SHAPE = {
    "overview": "...",
    "objectives": ["..."],
    "outcomes": ["..."],
    "prerequisites": ["..."],
    "sessions": [{"title": "...", "description": "...", "key_concepts": ["..."]}],
}


@lru_cache(maxsize=64)
def syllabus_reply(min_sessions: int, max_sessions: int, concepts: int) -> type[BaseModel]:
    """Reply schema of a syllabus: course parts, then min..max sessions of title, description and about `concepts`
    key concepts (`concept_range`)."""
    least, most = concept_range(concepts)
    session = create_model(
        "SessionReply",
        title=(str, Field(min_length=1, max_length=NAME_MAX)),
        description=(str, Field(min_length=1, max_length=TEXT_MAX)),
        key_concepts=(list[ShortText], Field(min_length=least, max_length=most)),
    )
    points = (list[Annotated[str, Field(min_length=1, max_length=TEXT_MAX)]], Field(min_length=1, max_length=8))
    return create_model(
        "SyllabusReply",
        overview=(str, Field(min_length=1, max_length=OVERVIEW_MAX)),
        objectives=points,
        outcomes=points,
        prerequisites=(list[Annotated[str, Field(min_length=1, max_length=TEXT_MAX)]], Field([], max_length=8)),
        sessions=(
            list[session],
            Field(
                min_length=min_sessions,  # type: ignore[valid-type]
                max_length=max(min_sessions, max_sessions),
            ),
        ),
    )


def concept_range(concepts: int) -> tuple[int, int]:
    """Key concepts a session may have: about `concepts` (the paper's ~5 gives 3 to 6)."""
    return max(1, concepts - 2), concepts + 1


def sibling_names(subjects: Iterable[Subject], limit: int = SIBLINGS) -> dict[str, list[str]]:
    """Per subject id: the names of up to `limit` other subjects of its discipline, the most alike first (shared
    course words), so the syllabus prompt can tell near-identical courses apart."""
    by_discipline: dict[str, list[Subject]] = {}
    for subject in subjects:
        by_discipline.setdefault(subject.discipline_id, []).append(subject)
    found: dict[str, list[str]] = {}
    for group in by_discipline.values():
        words = [set(course_words(s.subject_name)) for s in group]
        for i, subject in enumerate(group):
            alike = sorted(
                (j for j in range(len(group)) if j != i),
                key=lambda j: -len(words[i] & words[j]) / (len(words[i] | words[j]) or 1),
            )
            found[subject.id] = [group[j].subject_name for j in alike[:limit]]
    return found


def syllabus_prompt(
    subject: Subject, settings: Settings, paper: bool = False, siblings: list[str] | None = None
) -> RenderedPrompt:
    cfg = settings.syllabi
    least, most = concept_range(cfg.concepts_per_session)
    return render(
        "syllabi",
        subject=subject.subject_name,
        discipline=subject.discipline,
        level=subject.level,
        subtopics=subject.subtopics,
        siblings=siblings or [],
        min_sessions=cfg.min_sessions,
        max_sessions=cfg.max_sessions,
        concepts=cfg.concepts_per_session,
        least_concepts=least,
        most_concepts=most,
        language=settings.language,
        paper=paper,
    )


async def write_syllabus(
    caller: Caller, subject: Subject, settings: Settings, siblings: dict[str, list[str]] | None = None
) -> list[Syllabus] | Failure:
    """One call per subject (the subject is its own task); `siblings` names its discipline's other courses."""
    cfg = settings.syllabi
    others = (siblings or {}).get(subject.id)
    return await extraction.generate(
        caller,
        cfg.structure,
        subject.id,
        lambda paper: syllabus_prompt(subject, settings, paper, others),
        partial(_syllabus, subject),
        schema=syllabus_reply(cfg.min_sessions, cfg.max_sessions, cfg.concepts_per_session),
        what="course syllabus",
        shape=SHAPE,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        **budget(settings, cfg),
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
            overview=reply.parsed.overview.strip(),
            objectives=[o.strip() for o in reply.parsed.objectives],
            outcomes=[o.strip() for o in reply.parsed.outcomes],
            prerequisites=[p.strip() for p in reply.parsed.prerequisites],
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
    siblings = sibling_names(kept_records(settings, "subjects"))
    return await run_per_record(settings, NAME, "subjects", partial(write_syllabus, siblings=siblings))


def preview(settings: Settings) -> RenderedPrompt:
    subject = example_subject(settings)
    siblings = sibling_names(kept_records(settings, "subjects")).get(subject.id)
    return syllabus_prompt(subject, settings, siblings=siblings)


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
    preview=preview,
    notebook="03_syllabi",
    needs="subjects",
    typical_tokens=2_500,
)
