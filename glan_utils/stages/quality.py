"""After answers (not in the paper): an LLM judge scores each QA pair, and closed answers are answered twice.

GLAN keeps every pair that is not a duplicate or contaminated; this stage lets a researcher see, and the data set
drop, pairs that are wrong, incomplete, unclear, off the sampled concepts or not as hard as labelled. The judge
scores five rubric criteria (1..5) with a short rationale (a bounded JSON reply). A pair whose answer states a
closed final answer (a number or short formula) also gets an independent second answer from the answer prompt at
another seed (`quality.verifier_seed`, optionally `quality.verifier_model`), compared with sympy. The rule flags
(`stages.rules`, no calls) are recorded alongside for display; the data set recomputes them with its own limits.
Last, the code verifier (`stages.code_checks`, no calls) runs each pair whose question ships tests and whose answer
ships Python in the sandbox.

The judge is the answer model unless `quality.model` names another, on the run's endpoint unless
`quality.base_url` names another (which then serves the second answers too). Each pair is its own task: resume is
by pair id; a failed judge or verifier call is a Failure with its raw output, retried on the next run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from pydantic import BaseModel, Field

from glan_utils.core.records import Failure, Placement, QAPair, QualityVerdict, Verification
from glan_utils.llm.context import render_fitted
from glan_utils.llm.prompts import RenderedPrompt
from glan_utils.runs.store import RunStore
from glan_utils.settings import Settings
from glan_utils.stages.answers import answer_prompt, example_question
from glan_utils.stages.base import TEXT_MAX, Caller, Reply
from glan_utils.stages.code_checks import check_code_pairs
from glan_utils.stages.registry import Plan, Stage, StageReport, finish, run_pending
from glan_utils.stages.rules import rule_flags
from glan_utils.stages.selection import count_kept, first_record, kept_records
from glan_utils.stages.superseded import superseded_ids
from glan_utils.stages.verify import closed_value, compare_answers

NAME = "quality"
CRITERIA = ("correctness", "completeness", "clarity", "concept_fit", "difficulty_fit")


class QualityReply(BaseModel):
    """The judge's rubric: five 1..5 scores and a short rationale."""

    correctness: int = Field(ge=1, le=5)
    completeness: int = Field(ge=1, le=5)
    clarity: int = Field(ge=1, le=5)
    concept_fit: int = Field(ge=1, le=5)
    difficulty_fit: int = Field(ge=1, le=5)
    rationale: str = Field(min_length=1, max_length=TEXT_MAX)


def judge_model(settings: Settings) -> str | None:
    """`quality.model`, else the answer model, else the run's model (None: the client's default)."""
    return settings.quality.model or settings.answers.model or settings.llm.model


def judge_settings(settings: Settings) -> Settings:
    """The run's settings, pointed at the judge endpoint when `quality.base_url` names one."""
    if not settings.quality.base_url:
        return settings
    llm = settings.llm.model_copy(update={"base_url": settings.quality.base_url, "base_urls": []})
    return settings.model_copy(update={"llm": llm})


def quality_prompt(pair: QAPair, window: int | None = None, reply_tokens: int = 0) -> tuple[RenderedPrompt, list[str]]:
    """The judge prompt, its question and answer trimmed to fit `window` (None: as they are), and what was trimmed."""
    return render_fitted(
        "quality",
        window,
        reply_tokens,
        {"question": pair.question, "answer": pair.answer},
        subject=pair.subject,
        discipline=pair.discipline,
        level=pair.level,
        difficulty=pair.difficulty,
        question_type=pair.question_type,
        concepts=pair.concepts,
        language=pair.language,
    )


async def judge_pair(caller: Caller, pair: QAPair, settings: Settings) -> list[QualityVerdict] | Failure:
    """The judge call, then (for a closed final answer) the second answer; either failing fails the task."""
    cfg = settings.quality
    prompt, trimmed = quality_prompt(pair, caller.client.window(judge_model(settings)), cfg.max_tokens)
    judged = await caller.generate(
        pair.id,
        prompt,
        lambda reply: [reply],
        schema=QualityReply,
        model=judge_model(settings),
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
    )
    if isinstance(judged, Failure):
        return judged
    verifications = []
    if cfg.verify and closed_value(pair.answer) is not None:
        second = await _second_answer(caller, pair, settings)
        if isinstance(second, Failure):
            return second
        verifications.append(second)
    return [_verdict(pair, judged[0], verifications, settings, trimmed)]


async def _second_answer(caller: Caller, pair: QAPair, settings: Settings) -> Verification | Failure:
    """An independent answer to the same question (same prompt, another seed) compared with the first."""
    cfg = settings.quality
    replies = await caller.generate(
        pair.id,
        answer_prompt(pair, settings.language),
        lambda reply: [reply.text],
        model=cfg.verifier_model or settings.answers.model,
        temperature=settings.answers.temperature,
        max_tokens=cfg.verifier_max_tokens,
        sample_index=cfg.verifier_seed,
    )
    return replies if isinstance(replies, Failure) else compare_answers(pair.answer, replies[0])


def _verdict(
    pair: QAPair, reply: Reply, verifications: list[Verification], settings: Settings, trimmed: list[str]
) -> QualityVerdict:
    scores = {name: int(getattr(reply.parsed, name)) for name in CRITERIA}
    return QualityVerdict(
        pair_id=pair.id,
        question_id=pair.question_id,
        discipline_id=pair.discipline_id,
        subject_id=pair.subject_id,
        scores=scores,
        score=sum(scores.values()) / len(scores),
        rationale=reply.parsed.rationale.strip(),
        flags=rule_flags(pair.model_dump(), settings.dataset.quality),
        verifications=verifications,
        trimmed=trimmed,
        provenance=reply.provenance([pair.id, pair.question_id, pair.discipline_id]),
    )


def quality_tasks(settings: Settings) -> Iterator[QAPair]:
    """Every kept QA pair that a regeneration has not replaced (none when the stage is off); the pair is its own
    task."""
    if not settings.quality.enabled:
        return iter(())
    gone = superseded_ids(settings.run_dir)
    return (pair for pair in kept_records(settings, "answers") if pair.id not in gone)


async def run(settings: Settings) -> StageReport:
    """One verdict per kept QA pair (plus a second answer for closed ones), then the code verifier's sandbox runs
    (no calls)."""

    def total() -> int:
        return count_kept(settings, "answers") if settings.quality.enabled else 0

    report = await run_pending(judge_settings(settings), NAME, NAME, lambda: quality_tasks(settings), judge_pair, total)
    if settings.quality.enabled:
        report.extra["code_checks"] = await asyncio.to_thread(check_code_pairs, settings)
    return finish(settings, report)


def plan(settings: Settings, pairs: int) -> Plan:
    """One judge call per pair, and a second answer per closed one: counted once the answers exist, else
    assumed for every pair (an upper bound)."""
    if not settings.quality.enabled:
        return Plan(0, pairs)
    if not settings.quality.verify:
        return Plan(pairs, pairs)
    if not RunStore(settings.run_dir).records_path(QAPair.stage_name).exists():
        return Plan(2 * pairs, pairs)
    closed = sum(closed_value(pair.answer) is not None for pair in quality_tasks(settings))
    return Plan(pairs + closed, pairs)


def example_pair(settings: Settings) -> QAPair:
    """The run's first QA pair, or an example before the answers stage ran."""
    question = example_question(settings)
    return first_record(settings, QAPair) or QAPair(
        question_id=question.id,
        answer="The columns span the space and are independent, so they form a basis. Final answer: yes.",
        **question.model_dump(include={*Placement.model_fields, "question"}),
        language=settings.language,
    )


STAGE = Stage(
    record=QualityVerdict,
    run=run,
    plan=plan,
    preview=lambda settings: quality_prompt(example_pair(settings))[0],
    count=lambda settings: count_kept(settings, NAME),
    notebook="04_questions",
    default_model=judge_model,
    needs="answers",
    enabled=lambda settings: settings.quality.enabled,
)
