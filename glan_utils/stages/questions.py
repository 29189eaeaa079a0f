"""Paper §2.4: homework questions sampled from a syllabus, basic or challenging.

basic: exactly one class session and 1-5 of its key concepts; challenging: exactly two distinct sessions and
2-5 concepts with at least one from each. Every question gets a FRESH draw from its own seed (run seed +
syllabus id + sample index), so no sample is reused across questions (the public attempt's near-duplicate
bug). The prompt holds the course overview and objectives, the whole syllabus and "the student has learned up to
session N", N being the last chosen session; the drawn concepts are central and earlier sessions may be drawn on.
Each question also gets a question type (worked problem, proof, code with tests, ...) drawn from its own seeded
stream out of `questions.question_types` (a short list for the embedded model), recorded on the question.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache, partial

from pydantic import BaseModel, Field, create_model

from glan_utils.core.ids import content_hash
from glan_utils.core.records import ClassSession, Difficulty, Failure, Question, Subject, Syllabus
from glan_utils.llm.prompts import RenderedPrompt, render
from glan_utils.settings import Settings
from glan_utils.stages.base import Caller, Reply
from glan_utils.stages.bounds import budget, question_chars, question_types
from glan_utils.stages.registry import Plan, Stage, StageReport, finish, run_pending
from glan_utils.stages.selection import count_kept, kept_disciplines, kept_records
from glan_utils.stages.syllabi import example_subject

NAME = "questions"
MAX_CONCEPTS = 5


@lru_cache(maxsize=8)
def question_reply(max_chars: int) -> type[BaseModel]:
    """The reply schema with the endpoint's longest question (1,500 characters suit the embedded model only)."""
    return create_model("QuestionReply", question=(str, Field(min_length=1, max_length=max_chars)))


def pick_question_type(seed: int, syllabus_id: str, sample_index: int, types: list[str]) -> str:
    """The question's type, from its own seeded stream (independent of its concept draw)."""
    return random.Random(int(content_hash(seed, syllabus_id, sample_index, "question_type"), 16)).choice(types)


@dataclass(frozen=True)
class Draw:
    """The sessions and concepts one question must use."""

    sample_index: int
    difficulty: Difficulty
    session_indices: tuple[int, ...]
    concepts: tuple[str, ...]


def question_rng(seed: int, syllabus_id: str, sample_index: int) -> random.Random:
    """The question's own random stream; independent of every other question's."""
    return random.Random(int(content_hash(seed, syllabus_id, sample_index), 16))


def difficulties(n: int, challenging_ratio: float, rng: random.Random) -> list[Difficulty]:
    """round(n x ratio) challenging and the rest basic, in a seeded random order."""
    k = round(n * challenging_ratio)
    mix: list[Difficulty] = ["challenging"] * k + ["basic"] * (n - k)
    rng.shuffle(mix)
    return mix


def draw(syllabus: Syllabus, sample_index: int, difficulty: Difficulty, rng: random.Random) -> Draw:
    """Sample sessions and concepts by the paper's rules; one session only gives basic questions."""
    sessions = {s.index: s.key_concepts for s in syllabus.sessions}
    if difficulty == "challenging" and len(sessions) >= 2:
        pairs = [(a, b) for a in sessions for b in sessions if a < b and _has_distinct(sessions[a], sessions[b])]
        if pairs:
            a, b = rng.choice(pairs)
            first, second = rng.choice([(x, y) for x in sessions[a] for y in sessions[b] if x != y])
            pool = sorted({*sessions[a], *sessions[b]} - {first, second})
            extra = rng.sample(pool, rng.randint(0, min(MAX_CONCEPTS - 2, len(pool))))
            return Draw(sample_index, "challenging", (a, b), (first, second, *extra))
    index = rng.choice(sorted(sessions))
    chosen = rng.sample(sessions[index], rng.randint(1, min(MAX_CONCEPTS, len(sessions[index]))))
    return Draw(sample_index, "basic", (index,), tuple(chosen))


def _has_distinct(a: list[str], b: list[str]) -> bool:
    return len({*a, *b}) >= 2 and any(x != y for x in a for y in b)


def draws(syllabus: Syllabus, n: int, challenging_ratio: float, seed: int) -> list[Draw]:
    """The `n` draws of one syllabus: the difficulty mix from one seeded stream, each draw from its own."""
    mix = difficulties(n, challenging_ratio, question_rng(seed, syllabus.id, -1))
    return [draw(syllabus, i, level, question_rng(seed, syllabus.id, i)) for i, level in enumerate(mix)]


@dataclass(frozen=True)
class QuestionTask:
    """Write one question for one draw; field/sub-field come from the kept taxonomy."""

    syllabus: Syllabus
    draw: Draw
    field: str = ""
    subfield: str = ""
    question_type: str = ""

    @property
    def id(self) -> str:
        return content_hash(
            "question",
            self.syllabus.id,
            self.draw.sample_index,
            self.draw.session_indices,
            self.draw.concepts,
            *([self.question_type] if self.question_type else []),
        )


def question_prompt(task: QuestionTask, language: str) -> RenderedPrompt:
    syllabus, chosen = task.syllabus, task.draw
    return render(
        "questions",
        subject=syllabus.subject_name,
        discipline=syllabus.discipline,
        level=syllabus.level,
        overview=syllabus.overview,
        objectives=syllabus.objectives,
        sessions=[s.model_dump() for s in syllabus.sessions],
        learned_up_to=max(chosen.session_indices),
        session_indices=list(chosen.session_indices),
        concepts=list(chosen.concepts),
        difficulty=chosen.difficulty,
        question_type=task.question_type or "any suitable format",
        language=language,
    )


async def write_question(caller: Caller, task: QuestionTask, settings: Settings) -> list[Question] | Failure:
    """One call producing one question that uses exactly the drawn concepts."""
    cfg = settings.questions
    return await caller.generate(
        task.id,
        question_prompt(task, settings.language),
        partial(_question, task, settings.language),
        schema=question_reply(question_chars(settings)),
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        sample_index=task.draw.sample_index,
        **budget(settings, cfg),
    )


def _question(task: QuestionTask, language: str, reply: Reply) -> list[Question]:
    syllabus, chosen = task.syllabus, task.draw
    return [
        Question(
            syllabus_id=syllabus.id,
            subject_id=syllabus.subject_id,
            discipline_id=syllabus.discipline_id,
            field=task.field,
            subfield=task.subfield,
            discipline=syllabus.discipline,
            subject=syllabus.subject_name,
            level=syllabus.level,
            difficulty=chosen.difficulty,
            session_indices=list(chosen.session_indices),
            concepts=list(chosen.concepts),
            question_type=task.question_type,
            sample_index=chosen.sample_index,
            language=language,
            question=reply.parsed.question.strip(),
            provenance=reply.provenance([syllabus.id, syllabus.subject_id, syllabus.discipline_id]),
        )
    ]


def question_tasks(settings: Settings) -> Iterator[QuestionTask]:
    """Every planned question, streamed: `questions_per_syllabus` fresh draws per kept syllabus."""
    paths = {d.id: d.path for d in kept_disciplines(settings)}
    cfg, types = settings.questions, question_types(settings)
    for s in kept_records(settings, "syllabi"):
        field, subfield = paths[s.discipline_id][:2]
        for d in draws(s, cfg.questions_per_syllabus, cfg.challenging_ratio, settings.seed):
            kind = pick_question_type(settings.seed, s.id, d.sample_index, types)
            yield QuestionTask(s, d, field=field, subfield=subfield, question_type=kind)


async def run(settings: Settings) -> StageReport:
    """`questions_per_syllabus` questions per kept syllabus, each from its own draw."""
    total = count_kept(settings, "syllabi") * settings.questions.questions_per_syllabus
    return finish(
        settings, await run_pending(settings, NAME, NAME, lambda: question_tasks(settings), write_question, total)
    )


def preview(settings: Settings) -> RenderedPrompt:
    task = next(iter(question_tasks(settings)), None) or QuestionTask(
        _example_syllabus(example_subject(settings)),
        Draw(0, "basic", (1,), ("basis",)),
        question_type=question_types(settings)[0],
    )
    return question_prompt(task, settings.language)


def _example_syllabus(subject: Subject) -> Syllabus:
    return Syllabus(
        subject_id=subject.id,
        discipline_id=subject.discipline_id,
        discipline=subject.discipline,
        subject_name=subject.subject_name,
        level=subject.level,
        sessions=[ClassSession(index=1, title="Bases", key_concepts=["basis", "span"])],
    )


def plan(settings: Settings, syllabi: int) -> Plan:
    n = syllabi * settings.questions.questions_per_syllabus
    return Plan(n, n)


STAGE = Stage(
    record=Question,
    run=run,
    plan=plan,
    preview=preview,
    count=lambda settings: count_kept(settings, NAME),
    notebook="04_questions",
)
