"""Paper §2.4: homework questions sampled from a syllabus, basic or challenging.

basic: exactly one class session and 1-5 of its key concepts; challenging: exactly two distinct sessions and
2-5 concepts with at least one from each. Every question gets a FRESH draw from its own seed (run seed +
syllabus id + sample index), so no sample is reused across questions (the public attempt's near-duplicate
bug). A slot's difficulty comes from its own index too, so raising `questions_per_syllabus` keeps every
existing question. The prompt holds the course overview and objectives, the whole syllabus and "the student has
learned up to session N", N being the last chosen session; the drawn concepts are central and earlier sessions may
be drawn on. Each question also gets a question type (worked problem, proof, code with tests, ...) drawn from its
own seeded stream out of `questions.question_types` (a short list for the embedded model), weighted per field,
sub-field or discipline (`questions.type_weights`: no code with tests in Dance unless asked). The writer may fall
back to the closest type of the list when the drawn one cannot fit; it names the type it used (`type_used`, an
enum), and that type is recorded, answered on, judged on and exported.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field, create_model

from glan_utils.core.ids import content_hash
from glan_utils.core.records import ClassSession, Difficulty, Failure, Question, Subject, Syllabus
from glan_utils.llm.prompts import RenderedPrompt, render
from glan_utils.settings import Settings
from glan_utils.stages.base import Caller, Reply
from glan_utils.stages.bounds import budget
from glan_utils.stages.registry import Plan, Stage, StageReport, finish, run_pending
from glan_utils.stages.selection import count_kept, kept_disciplines, kept_records, write_json
from glan_utils.stages.syllabi import example_subject

NAME = "questions"
OUTSIDE_PLAN = "outside_plan.json"
MAX_CONCEPTS = 5


@lru_cache(maxsize=8)
def question_reply(max_chars: int, types: tuple[str, ...]) -> type[BaseModel]:
    """The reply schema: the question (the endpoint's longest: 1,500 characters suit the embedded model only) and
    the type the writer actually used, one of `types` (an enum; case and spacing forgiven)."""
    canonical = {" ".join(t.casefold().split()): t for t in types}
    used = Annotated[
        Literal[types],  # type: ignore[valid-type]
        BeforeValidator(lambda v: canonical.get(" ".join(str(v).casefold().split()), v)),
    ]
    return create_model(
        "QuestionReply", question=(str, Field(min_length=1, max_length=max_chars)), type_used=(used, ...)
    )


def type_weights(settings: Settings, types: list[str], *names: str) -> list[float]:
    """The weight of each type for a node: its most specific entry in `questions.type_weights` that names the
    type (names are discipline, sub-field, field; compared case-insensitively), else 1."""
    table = {name.casefold(): weights for name, weights in settings.questions.type_weights.items()}
    entries = [table[n.casefold()] for n in names if n and n.casefold() in table]
    return [next((e[t] for e in entries if t in e), 1.0) for t in types]


def pick_question_type(
    seed: int, syllabus_id: str, sample_index: int, types: list[str], weights: list[float] | None = None
) -> str:
    """The question's type, from its own seeded stream (independent of its concept draw). Equal weights draw as
    they always did (a uniform choice), so runs without weights keep their questions."""
    rng = random.Random(int(content_hash(seed, syllabus_id, sample_index, "question_type"), 16))
    if not weights or len(set(weights)) == 1 or not any(weights):
        return rng.choice(types)
    return rng.choices(types, weights)[0]


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


def difficulty(index: int, challenging_ratio: float, phase: float) -> Difficulty:
    """Slot `index`'s difficulty from its index alone: challenging when floor((i+1)r+phase) > floor(ir+phase).

    A rotation sequence: every prefix of n slots holds round(n x ratio) challenging ones, give or take one, and
    slot i never depends on how many slots there are, so raising `questions_per_syllabus` keeps every existing
    slot (and its question id). `phase` (from the seed and syllabus) varies which slots are challenging.
    """
    return (
        "challenging"
        if math.floor((index + 1) * challenging_ratio + phase) > math.floor(index * challenging_ratio + phase)
        else "basic"
    )


def difficulties(n: int, challenging_ratio: float, phase: float) -> list[Difficulty]:
    """The first `n` slots' difficulties; a prefix of the list for any larger `n`."""
    return [difficulty(i, challenging_ratio, phase) for i in range(n)]


@lru_cache(maxsize=4096)  # every slot of a syllabus asks for it; seeding a Random is the costly part
def slot_phase(seed: int, syllabus_id: str) -> float:
    """The syllabus's offset in [0, 1) of the difficulty sequence, from its own seeded stream."""
    return question_rng(seed, syllabus_id, -1).random()


def draw(syllabus: Syllabus, sample_index: int, difficulty: Difficulty, rng: random.Random) -> Draw:
    """Sample sessions and concepts by the paper's rules; one session only gives basic questions."""
    sessions = {s.index: s.key_concepts for s in syllabus.sessions}
    if difficulty == "challenging" and len(sessions) >= 2:
        pair = _session_pair(sessions, rng)
        if pair:
            a, b = pair
            first, second = _concept_pair(sessions[a], sessions[b], rng)
            pool = sorted({*sessions[a], *sessions[b]} - {first, second})
            extra = rng.sample(pool, rng.randint(0, min(MAX_CONCEPTS - 2, len(pool))))
            return Draw(sample_index, "challenging", (a, b), (first, second, *extra))
    index = rng.choice(sorted(sessions))
    chosen = rng.sample(sessions[index], rng.randint(1, min(MAX_CONCEPTS, len(sessions[index]))))
    return Draw(sample_index, "basic", (index,), tuple(chosen))


def _has_distinct(a: list[str], b: list[str]) -> bool:
    return len({*a, *b}) >= 2 and any(x != y for x in a for y in b)


TRIES = 16  # rejection-sampling attempts before enumerating: uniform either way, enumeration is the rare case


def _session_pair(sessions: dict[int, list[str]], rng: random.Random) -> tuple[int, int] | None:
    """Two sessions, uniform over the pairs that can give two distinct concepts; None when no pair can.

    Rejection sampling keeps a draw O(1) for a 30-session syllabus (enumerating its 435 pairs for each of ~10M
    questions would cost hours); it falls back to enumeration for degenerate syllabi."""
    indices = sorted(sessions)
    for _ in range(TRIES):
        a, b = sorted(rng.sample(indices, 2))
        if _has_distinct(sessions[a], sessions[b]):
            return a, b
    pairs = [(a, b) for a in indices for b in indices if a < b and _has_distinct(sessions[a], sessions[b])]
    return rng.choice(pairs) if pairs else None


def _concept_pair(a: list[str], b: list[str], rng: random.Random) -> tuple[str, str]:
    """One concept of each session, different from each other, uniform over such pairs (by rejection)."""
    for _ in range(TRIES):
        x, y = rng.choice(a), rng.choice(b)
        if x != y:
            return x, y
    return rng.choice([(x, y) for x in a for y in b if x != y])


def slot(syllabus: Syllabus, index: int, challenging_ratio: float, seed: int) -> Draw:
    """Question slot `index` of a syllabus: its difficulty and draw depend only on (seed, syllabus, index)."""
    level = difficulty(index, challenging_ratio, slot_phase(seed, syllabus.id))
    return draw(syllabus, index, level, question_rng(seed, syllabus.id, index))


def draws(syllabus: Syllabus, n: int, challenging_ratio: float, seed: int) -> list[Draw]:
    """The first `n` slots of one syllabus; a prefix of the slots for any larger `n`."""
    return [slot(syllabus, i, challenging_ratio, seed) for i in range(n)]


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


def question_prompt(task: QuestionTask, language: str, types: list[str] | None = None) -> RenderedPrompt:
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
        types=types or [task.question_type or "any suitable format"],
        language=language,
    )


async def write_question(caller: Caller, task: QuestionTask, settings: Settings) -> list[Question] | Failure:
    """One call producing one question that uses exactly the drawn concepts."""
    cfg = settings.questions
    types = [*cfg.question_types, *([task.question_type] if task.question_type not in cfg.question_types else [])]
    return await caller.generate(
        task.id,
        question_prompt(task, settings.language, types),
        partial(_question, task, settings.language),
        schema=question_reply(cfg.max_chars, tuple(types)),
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
            question_type=reply.parsed.type_used,
            sample_index=chosen.sample_index,
            language=language,
            question=reply.parsed.question.strip(),
            provenance=reply.provenance([syllabus.id, syllabus.subject_id, syllabus.discipline_id]),
        )
    ]


def question_tasks(settings: Settings) -> Iterator[QuestionTask]:
    """Every planned question, streamed: `questions_per_syllabus` fresh draws per kept syllabus."""
    paths = {d.id: d.path for d in kept_disciplines(settings)}
    types = settings.questions.question_types
    for s in kept_records(settings, "syllabi"):
        field, subfield = paths[s.discipline_id][:2]
        for index in range(settings.questions.questions_per_syllabus):
            yield planned_task(settings, s, index, types, field=field, subfield=subfield)


def planned_task(settings: Settings, syllabus: Syllabus, index: int, types: list[str], **place: str) -> QuestionTask:
    """Question slot `index` of a syllabus as the current plan has it: its draw and its question type."""
    chosen = slot(syllabus, index, settings.questions.challenging_ratio, settings.seed)
    weights = type_weights(settings, types, syllabus.discipline, place.get("subfield", ""), place.get("field", ""))
    kind = pick_question_type(settings.seed, syllabus.id, index, types, weights)
    return QuestionTask(syllabus, chosen, question_type=kind, **place)


def current_questions(settings: Settings) -> Iterator[Question]:
    """The kept questions of the current plan: a slot dropped by a smaller `questions_per_syllabus` (or a
    question of another seed or ratio) stays on disk but is not answered or counted. Each question's slot is
    recomputed from its own syllabus and index, so this streams at any scale."""
    return (question for question, planned in _against_plan(settings) if planned)


def _against_plan(settings: Settings) -> Iterator[tuple[Question, bool]]:
    """Every kept question, with whether the current plan still has its slot."""
    cfg = settings.questions
    types = cfg.question_types
    syllabi = {s.id: s for s in kept_records(settings, "syllabi")}
    for question in kept_records(settings, NAME):
        syllabus = syllabi.get(question.syllabus_id)
        planned = (
            syllabus is not None
            and question.sample_index < cfg.questions_per_syllabus
            and question.task_id
            == planned_task(
                settings, syllabus, question.sample_index, types, field=question.field, subfield=question.subfield
            ).id
        )
        yield question, planned


def write_outside_plan(settings: Settings) -> int:
    """Write the ids of kept questions the current plan no longer has to `outside_plan.json` (replaced whole, as
    the plan can grow back), so the data set leaves them and their answers out; returns how many there are."""
    ids = [question.id for question, planned in _against_plan(settings) if not planned]
    write_json(settings.run_dir / OUTSIDE_PLAN, ids)
    return len(ids)


def read_outside_plan(run_dir: Path) -> set[str]:
    """Question ids the last questions run found outside its plan (none before it ran)."""
    path = Path(run_dir) / OUTSIDE_PLAN
    return set(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else set()


async def run(settings: Settings) -> StageReport:
    """`questions_per_syllabus` questions per kept syllabus, each from its own draw."""
    total = count_kept(settings, "syllabi") * settings.questions.questions_per_syllabus
    report = await run_pending(settings, NAME, NAME, lambda: question_tasks(settings), write_question, total)
    report.extra["outside_plan"] = write_outside_plan(settings)
    return finish(settings, report)


def preview(settings: Settings) -> RenderedPrompt:
    task = next(iter(question_tasks(settings)), None) or QuestionTask(
        _example_syllabus(example_subject(settings), settings),
        Draw(0, "basic", (1,), ("key concept 1.1",)),
        question_type=settings.questions.question_types[0],
    )
    return question_prompt(task, settings.language, settings.questions.question_types)


def _example_syllabus(subject: Subject, settings: Settings) -> Syllabus:
    """A stand-in syllabus of the planned size (mid-range sessions x concepts), so the estimate's prompt tokens
    match what the real prompts will carry before any syllabus exists."""
    cfg = settings.syllabi
    sessions = (cfg.min_sessions + cfg.max_sessions) // 2
    return Syllabus(
        subject_id=subject.id,
        discipline_id=subject.discipline_id,
        discipline=subject.discipline,
        subject_name=subject.subject_name,
        level=subject.level,
        sessions=[
            ClassSession(
                index=i,
                title=f"Session {i} of the course",
                description="What this class session covers and why it matters.",
                key_concepts=[f"key concept {i}.{c}" for c in range(1, cfg.concepts_per_session + 1)],
            )
            for i in range(1, sessions + 1)
        ],
    )


def plan(settings: Settings, syllabi: int) -> Plan:
    n = syllabi * settings.questions.questions_per_syllabus
    return Plan(n, n)


STAGE = Stage(
    record=Question,
    run=run,
    plan=plan,
    preview=preview,
    count=lambda settings: sum(1 for _ in current_questions(settings)),
    notebook="04_questions",
    needs="syllabi",
    typical_tokens=100,
)
