"""What makes a stage a stage: one `Stage` object per stage module, and the run machinery they all share.

Every list of stages (the pipeline order, the runners, the record types, the settings a stage's snapshot keeps,
the estimates) is derived from the `Stage` objects, so adding a stage is one module in `stages/`, one prompt and
the notebook cells that show it. A stage's name is also its records file, its settings section, its prompt and
its module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Container, Iterable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from glan_utils.core.errors import ConfigError
from glan_utils.core.records import Record
from glan_utils.llm.batch import batch_mode, plan_pass
from glan_utils.llm.client import LLMClient
from glan_utils.llm.ledger import Totals
from glan_utils.llm.prompts import RenderedPrompt
from glan_utils.runs.client import run_client
from glan_utils.runs.distributed import run_stage_distributed
from glan_utils.runs.stage import StageSummary, record_all_done, run_stage
from glan_utils.runs.store import RunStore
from glan_utils.settings import Settings
from glan_utils.stages.base import Caller
from glan_utils.stages.selection import count_kept, kept_records, record_plan

StageWork = Callable[[Caller, Any, Settings], Awaitable[Any]]


@dataclass
class StageReport:
    """What a stage run did: run_stage's summary, this run's LLM calls, repairs and stage-specific counts."""

    stage: str
    summary: StageSummary
    llm: Totals = field(default_factory=Totals)
    repaired: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.summary.as_dict(),
            "status": self.summary.status,
            "llm_calls": self.llm.calls,
            "cache_hits": self.llm.cached,
            "failed_attempts": self.llm.failed,
            "prompt_tokens": self.llm.prompt_tokens,
            "completion_tokens": self.llm.completion_tokens,
            "cost_usd": round(self.llm.cost_usd, 4),
            "repaired_outputs": self.repaired,
            **self.extra,
        }

    def absorb(self, other: StageReport) -> None:
        """Add another partial run of the same stage (taxonomy runs one pass per level)."""
        for name in ("planned", "skipped", "records", "failed"):
            setattr(self.summary, name, getattr(self.summary, name) + getattr(other.summary, name))
        self.summary.failures_by_reason.update(other.summary.failures_by_reason)
        for name, value in vars(other.llm).items():
            setattr(self.llm, name, getattr(self.llm, name) + value)
        self.repaired += other.repaired


@dataclass(frozen=True)
class Plan:
    """How many calls a stage makes and how many records it hands the next stage."""

    calls: int
    outputs: int


@dataclass(frozen=True)
class Stage:
    """One GLAN stage. `plan(settings, inputs)` sizes it from the number of records the previous stage hands it;
    `preview` renders the first prompt it would send (with an example input before the previous stage ran);
    `count` counts what it has handed on so far, by default its records under the disciplines the review kept."""

    record: type[Record]
    run: Callable[[Settings], Awaitable[StageReport]]
    plan: Callable[[Settings, int], Plan]
    preview: Callable[[Settings], RenderedPrompt]
    notebook: str
    count: Callable[[Settings], int] | None = None
    default_model: Callable[[Settings], str | None] | None = None  # when the section has no model of its own
    parts: tuple[str, ...] = ()  # records files the stage writes before its own (e.g. `subject_rounds`)
    needs: str | None = None  # the stage whose records it reads: without them it refuses to start
    enabled: Callable[[Settings], bool] | None = None  # None: always; else whether the settings switch it on
    typical_tokens: int | None = None  # a typical reply's length on a remote model (docs/scale.md's assumptions)
    call_tokens: Callable[[Settings], int] | None = None  # mean output budget of a call, where budgets differ

    @property
    def name(self) -> str:
        return self.record.stage_name

    def handed_on(self, settings: Settings) -> int:
        """How many records this stage has handed to the next one."""
        return self.count(settings) if self.count else count_kept(settings, self.name)

    def max_tokens(self, settings: Settings) -> int:
        """The output budget of one call on this run's endpoint (its profile's default unless set; the mean over
        its calls where they have different budgets)."""
        return self.call_tokens(settings) if self.call_tokens else self.section(settings).max_tokens

    def model(self, settings: Settings) -> str:
        """The model the stage's calls go to: its own `model` setting, else its default, else the run's."""
        own = getattr(self.section(settings), "model", None)
        fallback = self.default_model(settings) if self.default_model else None
        return own or fallback or settings.llm.model or "embedded"

    def section(self, settings: Settings) -> Any:
        return getattr(settings, self.name)


# The settings every stage shares; a stage's snapshot updates these and its own section only, so `config.yaml`
# ends up describing what every stage really ran with.
SHARED_SETTINGS = ("run_name", "output_dir", "seed", "language", "llm", "embedded", "batch", "scale")
# What shapes every stage's records, besides each stage's own section: a continued run must keep these.
SHAPING_SETTINGS = ("seed", "language", "llm.model", "embedded.model")
# Keys of a stage's section that change no record of it (which review to apply, where the judge is served, how many
# follow-up rounds: a round's draw depends on (seed, pair, turn) only, so more turns keep the earlier rounds), or
# that only choose which of its records are in the plan (the taxonomy file or sizes, a cap, a merge threshold, the
# slots per syllabus): records left outside the plan stay on disk and are in it again, at no cost, when the change is
# undone, so changing these replans instead of refusing the run.
NOT_SHAPING = (
    "taxonomy.review_file",
    "quality.base_url",
    "followups.turns",
    "taxonomy.source",
    "taxonomy.n_fields",
    "taxonomy.n_subfields",
    "taxonomy.n_disciplines",
    "subjects.max_subjects",
    "subjects.merge_threshold",
    "subjects.merge_by_embedding",
    "questions.questions_per_syllabus",
)


def _value(snapshot: dict[str, Any], dotted: str) -> Any:
    node: Any = snapshot
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def identity_changes(previous: dict[str, Any], snapshot: dict[str, Any], sections: Iterable[str]) -> dict[str, Any]:
    """The record-shaping keys whose value differs from the run's snapshot: key -> (was, now).

    The shared keys always count (call this for a run with records); a section's own keys only for the
    `sections` named (those of the stages with records), so settings of a stage not run yet may still change."""
    keys = [*SHAPING_SETTINGS]
    for section in sections:
        old, new = previous.get(section), snapshot.get(section)
        if isinstance(old, dict) and isinstance(new, dict):
            keys += [f"{section}.{leaf}" for leaf in old if leaf in new and f"{section}.{leaf}" not in NOT_SHAPING]
    return {
        key: (_value(previous, key), _value(snapshot, key))
        for key in keys
        if key.split(".")[0] in previous and _value(previous, key) != _value(snapshot, key)
    }


class RunChanged(ConfigError):
    """Settings that shape records differ from those the run's records were made with."""

    def __init__(self, run_name: str, changes: dict[str, Any]) -> None:
        keys = ", ".join(f"{key} {was!r} -> {now!r}" for key, (was, now) in changes.items())
        super().__init__(
            f"run '{run_name}' was made with other settings ({keys}): pick a new run name to keep both, or "
            f"replace its records made with the old ones: glan run {run_name} --replan (in a notebook: "
            "pipeline.replan(settings))"
        )


def check_identity(store: RunStore, settings: Settings, sections: Iterable[str]) -> None:
    """Refuse settings that would mix records made two ways in one run (RunChanged names the keys)."""
    if changes := identity_changes(store.read_config(), settings.snapshot(), sections):
        raise RunChanged(settings.run_name, changes)


def has_records(store: RunStore) -> bool:
    """Whether any stage of the run has written records (the manifest says, without reading a file)."""
    return any(info.get("records_written") for info in store.read_manifest().get("stages", {}).values())


def open_store(settings: Settings, section: str, stage: str | None = None, *, same_run: bool = True) -> RunStore:
    """The run's store, with the `section` settings (and the shared ones) merged into the run's `config.yaml`.

    With `same_run`, when the run has records, the settings that shaped them (the shared ones; the section's own
    when `stage` has records) must be unchanged: RunChanged otherwise, before anything is written. A
    regeneration, which records its own seed and model, passes False."""
    store = RunStore(settings.run_dir)
    snapshot = settings.snapshot()
    previous = store.read_config()
    if same_run and previous and has_records(store):
        check_identity(store, settings, [section] if store.has_records(stage or section) else [])
    if previous:
        snapshot = previous | {key: snapshot[key] for key in (*SHARED_SETTINGS, section) if key in snapshot}
    store.write_config(snapshot)
    return store


def _count_if_all_done(tasks: Iterable[Any], done: Container[str]) -> int | None:
    """How many tasks there are, if every one is done; None at the first that is not."""
    count = 0
    for task in tasks:
        if task.id not in done:
            return None
        count += 1
    return count


def _sending(
    settings: Settings,
    store: RunStore,
    client: LLMClient,
    stage: str,
    pending: Callable[[], Iterable[Any]],
    work: StageWork,
) -> AbstractAsyncContextManager[Any]:
    """How the stage's calls are sent: online (as they come), or first through the Batch API (`llm.mode`)."""
    if settings.llm.mode != "batch":
        return nullcontext()
    planner = Caller(client, stage)

    async def plan() -> None:
        await plan_pass(pending(), lambda t: work(planner, t, settings), settings.llm.concurrency)

    tags = {"glan_run": settings.run_name, "glan_stage": stage}
    return batch_mode(client, plan, store.path("batches") / f"{stage}.sqlite", settings.batch, tags)


async def _work_on_ray(work: StageWork, stage: str, settings: Settings, client: LLMClient, task: Any) -> Any:
    """A stage's work as a Ray shard runs it (module level, so it pickles by reference)."""
    return await work(Caller(client, stage), task, settings)


async def run_pending(
    settings: Settings,
    stage: str,
    section: str,
    make_tasks: Callable[[], Iterable[Any]],
    work: StageWork,
    total: int | Callable[[], int] | None = None,
    *,
    same_run: bool = True,
) -> StageReport:
    """Run one stage's pending tasks; open the client only when there is something to do.

    `total` sizes the progress bar; as a callable it is counted only when some task is pending, so a rerun of a
    finished stage does not read its inputs once more just to count them.

    With `llm.mode: batch` the pending tasks' calls first go through the Batch API; the run then completes
    from its replies (and, for what it did not answer, as `batch.remainder` says). `same_run` is `open_store`'s.
    """
    store = open_store(settings, section, stage, same_run=same_run)
    done = store.done_task_ids(stage)
    if (planned := _count_if_all_done(make_tasks(), done)) is not None:
        return StageReport(stage, record_all_done(store, stage, planned))
    if settings.scale.backend == "ray":
        ray_work = partial(_work_on_ray, work, stage, settings)
        summary, totals = await asyncio.to_thread(
            run_stage_distributed, settings, stage, make_tasks(), ray_work, settings.scale
        )
        return StageReport(stage, summary, totals)
    total = total() if callable(total) else total
    async with run_client(settings, stage=stage) as client:
        caller = Caller(client, stage)
        sending = _sending(settings, store, client, stage, lambda: (t for t in make_tasks() if t.id not in done), work)
        async with sending:
            summary = await run_stage(
                store,
                stage,
                make_tasks(),
                lambda t: work(caller, t, settings),
                concurrency=settings.llm.concurrency,
                total=total,
            )
        totals = Totals(**vars(client.ledger.totals))
    return StageReport(stage, summary, totals, caller.tally.repaired)


async def run_per_record(settings: Settings, stage: str, source: str, work: StageWork) -> StageReport:
    """One task per kept record of the `source` stage (the record is its own task, so resume is by its id)."""
    total = partial(count_kept, settings, source)
    report = await run_pending(settings, stage, stage, lambda: kept_records(settings, source), work, total)
    return finish(settings, report)


def finish(settings: Settings, report: StageReport) -> StageReport:
    """Write the report into the run's manifest, refresh the run's plan (`plan.json`) and return the report."""
    RunStore(settings.run_dir).update_manifest(report.stage, **report.as_dict())
    record_plan(settings)
    return report
