"""After quality (not in the paper): follow-up conversations on each QA pair, grounded in its syllabus.

GLAN stops at one question and one answer, and names multi-turn data as future work. This stage adds
`followups.turns` rounds per pair. Each round is two calls: the student's next message, of a kind drawn from
(seed, pair, turn) alone (ask about a step, ask why, a variant with changed givens, "check my attempt" with a
planted mistake the student names for the judge, connect to a later session's concept), written from the syllabus
sessions the question draws on and the conversation so far; then the tutor's reply, which sees the whole
conversation as chat messages and builds on its earlier answers. The rule checks run on every round; with
`followups.judge` a third call scores the round on the conversation rubric (`RoundScores`).

A task is one pair at one `turns`: a run with more turns is a new task whose earlier rounds are the same calls
(answered from the response cache, so the same records), and the data set reads, per pair, rounds 1..turns.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

from pydantic import BaseModel, Field

from glan_utils.core.ids import content_hash
from glan_utils.core.records import ClassSession, Failure, FollowUp, QAPair, Syllabus
from glan_utils.llm.prompts import RenderedPrompt, render
from glan_utils.runs.store import RunStore
from glan_utils.settings import Settings
from glan_utils.stages.base import TEXT_MAX, Caller, Reply
from glan_utils.stages.bounds import budget
from glan_utils.stages.quality import example_pair, judge_model
from glan_utils.stages.registry import Plan, Stage, StageReport, finish, run_pending
from glan_utils.stages.rules import rule_flags
from glan_utils.stages.selection import kept_records
from glan_utils.stages.superseded import superseded_ids

NAME = "followups"
MESSAGE_MAX = 3000


class RoundScores(BaseModel):
    """The conversation rubric of one round: three 1..5 scores and a short rationale."""

    answers_followup: int = Field(ge=1, le=5, description="The reply answers this follow-up, not the first question.")
    consistent: int = Field(ge=1, le=5, description="Consistent with the earlier answers, building on them.")
    caught_mistake: int = Field(ge=1, le=5, description="The planted mistake is found and corrected (5 if none).")
    rationale: str = Field(min_length=1, max_length=TEXT_MAX)


CRITERIA = tuple(name for name in RoundScores.model_fields if name != "rationale")


class StudentReply(BaseModel):
    """The student's next message; for "check my attempt", the mistake planted in it (hidden from the tutor)."""

    message: str = Field(min_length=1, max_length=MESSAGE_MAX)
    mistake: str = Field("", max_length=TEXT_MAX)


@dataclass(frozen=True)
class Conversation:
    """One task: a QA pair, the syllabus sessions its question draws on, the later concepts, and `turns` rounds."""

    pair: QAPair
    sessions: list[ClassSession]
    later: list[str]
    turns: int

    @cached_property
    def id(self) -> str:
        return content_hash(NAME, self.pair.id, self.turns)


def later_concepts(syllabus: Syllabus | None, pair: QAPair) -> list[str]:
    """Concepts of the sessions after the question's; at the course's end, any concept the question did not use."""
    if syllabus is None:
        return list(pair.concepts)
    last = max(pair.session_indices, default=0)
    later = [c for s in syllabus.sessions if s.index > last for c in s.key_concepts]
    unused = [c for s in syllabus.sessions for c in s.key_concepts if c not in pair.concepts]
    return later or unused or list(pair.concepts)


def draw_kind(seed: int, pair_id: str, turn: int, kinds: list[str], later: list[str]) -> tuple[str, str]:
    """The round's kind (and, for "connect", the later concept), from (seed, pair, turn) alone."""
    rng = random.Random(int(content_hash(seed, pair_id, turn, NAME), 16))
    kind = rng.choice(kinds)
    return kind, rng.choice(later) if kind == "connect" and later else ""


def history(pair: QAPair, rounds: list[FollowUp]) -> list[dict[str, str]]:
    """The conversation so far as chat messages: the question, the answer, then each round's two turns."""
    messages = [{"role": "user", "content": pair.question}, {"role": "assistant", "content": pair.answer}]
    return messages + [m for done in rounds for m in round_messages(done)]


def round_messages(record: FollowUp) -> list[dict[str, str]]:
    """One round as two chat messages: the student's as `user`, the tutor's as `assistant`."""
    return [{"role": "user", "content": record.student}, {"role": "assistant", "content": record.tutor}]


def student_prompt(task: Conversation, rounds: list[FollowUp], kind: str, concept: str) -> RenderedPrompt:
    pair = task.pair
    return render(
        NAME,
        role="student",
        kind=kind,
        concept=concept,
        discipline=pair.discipline,
        subject=pair.subject,
        level=pair.level,
        language=pair.language,
        sessions=task.sessions,
        conversation=history(pair, rounds),
    )


def tutor_prompt(pair: QAPair, conversation: list[dict[str, str]]) -> RenderedPrompt:
    """The tutor's system turn, then the whole conversation ending with the student's new message."""
    system = render(NAME, role="tutor", discipline=pair.discipline, level=pair.level, language=pair.language)
    return RenderedPrompt(system.name, system.hash, system.messages + conversation)


def judge_prompt(pair: QAPair, conversation: list[dict[str, str]], mistake: str) -> RenderedPrompt:
    """The conversation rubric for the last reply of `conversation`, told the planted mistake if there is one."""
    return render(
        NAME,
        role="judge",
        discipline=pair.discipline,
        level=pair.level,
        language=pair.language,
        conversation=conversation,
        mistake=mistake,
    )


async def converse(caller: Caller, task: Conversation, settings: Settings) -> list[FollowUp] | Failure:
    """Rounds 1..turns in order, each seeing the rounds before it; a failed call fails the task (kept calls are
    cached, so the retry on the next run pays only for what failed)."""
    rounds: list[FollowUp] = []
    for turn in range(1, task.turns + 1):
        made = await _round(caller, task, rounds, turn, settings)
        if isinstance(made, Failure):
            return made
        rounds.append(made)
    return rounds


async def _round(
    caller: Caller, task: Conversation, rounds: list[FollowUp], turn: int, settings: Settings
) -> FollowUp | Failure:
    cfg, pair = settings.followups, task.pair
    model = cfg.model or settings.answers.model
    kind, concept = draw_kind(settings.seed, pair.id, turn, cfg.kinds, task.later)
    asked = await caller.generate(
        task.id,
        student_prompt(task, rounds, kind, concept),
        lambda reply: [reply],
        schema=StudentReply,
        model=model,
        temperature=cfg.student_temperature,
        max_tokens=cfg.student_max_tokens,
    )
    if isinstance(asked, Failure):
        return asked
    student = asked[0]
    message = student.parsed.message.strip()
    answered = await caller.generate(
        task.id,
        tutor_prompt(pair, [*history(pair, rounds), {"role": "user", "content": message}]),
        lambda reply: [reply],
        model=model,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        **budget(settings, cfg),
    )
    if isinstance(answered, Failure):
        return answered
    tutor = answered[0]
    if not tutor.text.strip():
        return tutor.failure("empty tutor reply")
    made = _followup(task, turn, kind, concept, student, tutor, settings)
    return await _judged(caller, task, rounds, made, settings) if cfg.judge else made


async def _judged(
    caller: Caller, task: Conversation, rounds: list[FollowUp], made: FollowUp, settings: Settings
) -> FollowUp | Failure:
    """The round with the conversation rubric's scores (the whole conversation, ending with this reply)."""
    conversation = history(task.pair, [*rounds, made])
    judged = await caller.generate(
        task.id,
        judge_prompt(task.pair, conversation, made.mistake),
        lambda reply: [reply.parsed],
        schema=RoundScores,
        model=judge_model(settings),
        temperature=settings.quality.temperature,
        max_tokens=settings.quality.max_tokens,
    )
    if isinstance(judged, Failure):
        return judged
    scores = {name: int(getattr(judged[0], name)) for name in CRITERIA}
    return made.model_copy(update={"scores": scores, "rationale": judged[0].rationale.strip()})


def _followup(
    task: Conversation, turn: int, kind: str, concept: str, student: Reply, tutor: Reply, settings: Settings
) -> FollowUp:
    pair = task.pair
    message, answer = student.parsed.message.strip(), tutor.text.strip()
    parents = [pair.id, pair.question_id, pair.syllabus_id, pair.discipline_id]
    return FollowUp(
        pair_id=pair.id,
        discipline_id=pair.discipline_id,
        subject_id=pair.subject_id,
        discipline=pair.discipline,
        turn=turn,
        kind=kind,
        seed=settings.seed,
        student=message,
        tutor=answer,
        mistake=student.parsed.mistake.strip() if kind == "check_attempt" else "",
        concept=concept,
        language=pair.language,
        flags=rule_flags(pair.model_dump() | {"question": message, "answer": answer}, settings.dataset.quality),
        provenance=tutor.provenance(parents),
        student_provenance=student.provenance(parents),
    )


def conversation_tasks(settings: Settings) -> Iterator[Conversation]:
    """One task per kept QA pair that a regeneration has not replaced (none when `turns` is 0)."""
    turns = settings.followups.turns
    if not turns:
        return
    syllabi = {s.id: s for s in kept_records(settings, "syllabi")}
    gone = superseded_ids(settings.run_dir)
    for pair in kept_records(settings, "answers"):
        if pair.id in gone:
            continue
        syllabus = syllabi.get(pair.syllabus_id)
        sessions = [s for s in syllabus.sessions if s.index in pair.session_indices] if syllabus else []
        yield Conversation(pair, sessions, later_concepts(syllabus, pair), turns)


def rounds_by_pair(
    records: Iterable[FollowUp], turns: int, keep: Callable[[FollowUp], bool] = lambda record: True
) -> dict[str, list[FollowUp]]:
    """Per pair id, its rounds 1..`turns` in order. The last record of a round wins (a rerun's); a conversation
    ends before a missing round or one `keep` refuses, and a pair with no round left is absent."""
    latest = {(r.pair_id, r.turn): r for r in records if r.turn <= turns}
    out: dict[str, list[FollowUp]] = {}
    for (pair_id, turn), record in sorted(latest.items()):
        rounds = out.setdefault(pair_id, [])
        if len(rounds) == turn - 1 and keep(record):
            rounds.append(record)
    return {pair_id: rounds for pair_id, rounds in out.items() if rounds}


def conversations(settings: Settings) -> dict[str, list[FollowUp]]:
    """Per kept pair id, its rounds 1..`followups.turns` (see `rounds_by_pair`)."""
    turns = settings.followups.turns
    if not turns or not RunStore(settings.run_dir).records_path(NAME).exists():
        return {}
    return rounds_by_pair(kept_records(settings, NAME), turns)


async def run(settings: Settings) -> StageReport:
    """`followups.turns` rounds for every kept pair; each pair (at this many turns) is its own task."""

    def total() -> int:
        return sum(1 for _ in conversation_tasks(settings))

    return finish(
        settings, await run_pending(settings, NAME, NAME, lambda: conversation_tasks(settings), converse, total)
    )


def preview(settings: Settings) -> RenderedPrompt:
    """The first round's student prompt for the run's first pair (an example pair before answers ran)."""
    pair = example_pair(settings)
    task = Conversation(pair, [], list(pair.concepts), max(1, settings.followups.turns))
    kind, concept = draw_kind(settings.seed, pair.id, 1, settings.followups.kinds, task.later)
    return student_prompt(task, [], kind, concept)


def call_tokens(settings: Settings) -> int:
    """The mean output budget of a round's calls: the student turn, the tutor's reply and (judged) the rubric."""
    cfg = settings.followups
    budgets = [cfg.student_max_tokens, cfg.max_tokens, *([settings.quality.max_tokens] if cfg.judge else [])]
    return -(-sum(budgets) // len(budgets))


STAGE = Stage(
    record=FollowUp,
    run=run,
    plan=lambda settings, pairs: Plan((2 + settings.followups.judge) * settings.followups.turns * pairs, pairs),
    preview=preview,
    notebook="04_questions",
    default_model=lambda settings: settings.answers.model,
    needs="answers",
    enabled=lambda settings: settings.followups.turns > 0,
    call_tokens=call_tokens,
)
