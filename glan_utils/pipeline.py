"""One function per generation stage, for notebooks and the CLI: run (resumably) and summarise.

Each `run_*` reads the previous stage's records from the run directory, keeps only work under the disciplines
kept by the taxonomy review, runs the calls through `run_stage` (resume by task id, failures kept) and returns
a `StageReport`. When every task of a stage is already done, no client (and no embedded server) is even
started. Estimates (`estimate_stage`, `preview_prompt`) and input selection (`kept_*`) are re-exported here so
a notebook needs only this module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glan_utils import answers, homework, subjects, syllabus, taxonomy
from glan_utils.config import Settings, load_settings
from glan_utils.estimates import estimate_stage, planned_calls, preview_prompt
from glan_utils.generation import Caller
from glan_utils.ledger import Totals
from glan_utils.llm import open_client
from glan_utils.records import TaxonomyNode
from glan_utils.selection import (
    count_kept,
    current_review,
    kept_disciplines,
    kept_records,
    kept_taxonomy,
    question_tasks,
    review_path,
)
from glan_utils.stage import StageSummary, run_stage
from glan_utils.store import RunStore

__all__ = [
    "STAGES",
    "StageReport",
    "current_review",
    "estimate_stage",
    "kept_disciplines",
    "kept_records",
    "kept_taxonomy",
    "notebook_settings",
    "planned_calls",
    "preview_prompt",
    "question_tasks",
    "review_path",
    "run_answers",
    "run_questions",
    "run_subjects",
    "run_syllabi",
    "run_taxonomy",
    "run_until",
]

STAGES = ("taxonomy", "subjects", "syllabi", "questions", "answers")


@dataclass
class StageReport:
    """What a stage run did: run_stage's summary, this run's LLM calls, repairs and stage-specific counts."""

    stage: str
    summary: StageSummary
    llm: Totals = field(default_factory=Totals)
    repaired: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        status = "complete" if self.summary.failed == 0 else "complete_with_failures"
        return {
            **self.summary.as_dict(),
            "status": status,
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


def notebook_settings(config_path: str | None, parameters: dict[str, Any],
                      overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from a notebook's papermill parameters: dotted keys, None meaning "keep the file/default".

    `overrides` (dotted keys) wins over both, so any setting can be changed from papermill or `glan run`. A relative
    `output_dir` is taken from the repository root when the kernel runs in `notebooks/` (as JupyterLab starts it),
    so interactive and batch runs share one `outputs/`.
    """
    values = {k: v for k, v in parameters.items() if v is not None} | dict(overrides or {})
    output_dir = Path(values.get("output_dir", "outputs"))
    here = Path.cwd()
    if not output_dir.is_absolute() and here.name == "notebooks" and (here.parent / "glan_utils").is_dir():
        values["output_dir"] = str(here.parent / output_dir)
    return load_settings(config_path, values)


# The settings a stage's notebook actually controls; its snapshot updates only these (plus the shared endpoint
# settings), so `config.yaml` ends up describing what every stage really ran with.
SHARED_SETTINGS = ("run_name", "output_dir", "seed", "language", "llm", "embedded")
STAGE_SETTINGS = {"taxonomy": "taxonomy", "subject_rounds": "subjects", "subjects": "subjects",
                  "syllabi": "syllabus", "questions": "homework", "answers": "answers"}


def open_store(settings: Settings, stage: str) -> RunStore:
    """The run's store, with this stage's settings merged into the run's `config.yaml`."""
    store = RunStore(settings.run_dir)
    snapshot = settings.snapshot()
    previous = store.read_config()
    if previous:
        keys = (*SHARED_SETTINGS, STAGE_SETTINGS.get(stage, stage))
        snapshot = previous | {key: snapshot[key] for key in keys if key in snapshot}
    store.write_config(snapshot)
    return store


StageWork = Callable[[Caller, Any, Settings], Awaitable[Any]]


async def _never(task: Any) -> Any:
    raise AssertionError(f"task {task.id} was expected to be done already")  # pragma: no cover


async def _run(
    settings: Settings,
    stage: str,
    make_tasks: Callable[[], Iterable[Any]],
    work: StageWork,
    total: int | None = None,
) -> StageReport:
    """Run one stage's pending tasks; open the client only when there is something to do."""
    store = open_store(settings, stage)
    done = store.done_task_ids(stage)
    if all(task.id in done for task in make_tasks()):
        summary = await run_stage(store, stage, make_tasks(), _never, concurrency=1, total=total)
        return StageReport(stage, summary)
    async with open_client(settings, stage=stage) as client:
        caller = Caller(client, stage)
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


def _finish(settings: Settings, report: StageReport) -> StageReport:
    RunStore(settings.run_dir).update_manifest(report.stage, **report.as_dict())
    return report


# ----- taxonomy -----


async def run_taxonomy(settings: Settings) -> StageReport:
    """Load the user's taxonomy file, or generate fields, sub-fields per field, disciplines per sub-field."""
    store = open_store(settings, taxonomy.STAGE)
    if settings.taxonomy.source:
        nodes = taxonomy.load_taxonomy_file(settings.taxonomy.source)
        added = store.append(taxonomy.STAGE, nodes)
        summary = StageSummary(taxonomy.STAGE, planned=len(nodes), skipped=len(nodes) - added, records=added)
        return _finish(
            settings, StageReport(taxonomy.STAGE, summary, extra={"source": settings.taxonomy.source})
        )
    report = StageReport(taxonomy.STAGE, StageSummary(taxonomy.STAGE))
    parents: list[TaxonomyNode | None] = [None]
    for level in taxonomy.LEVELS:
        tasks = [taxonomy.ExpandTask(p, level, taxonomy.level_size(settings, level)) for p in parents]
        part = await _run(settings, taxonomy.STAGE, lambda t=tasks: t, taxonomy.expand, total=len(tasks))
        report.absorb(part)
        parent_ids = {p.id if p else None for p in parents}
        parents = [
            n for n in store.iter_records(taxonomy.STAGE) if n.level == level and n.parent_id in parent_ids
        ]
    return _finish(settings, report)


# ----- subjects, syllabi, questions, answers -----


async def run_subjects(settings: Settings) -> StageReport:
    """Sample `rounds` lists of subjects per kept discipline, then merge near-duplicates into `subjects`."""
    kept = kept_disciplines(settings)
    tasks = subjects.round_tasks(kept, settings.subjects.rounds)
    report = await _run(
        settings, subjects.STAGE_ROUNDS, lambda: tasks, subjects.sample_round, total=len(tasks)
    )
    _finish(settings, report)
    store, kept_ids = RunStore(settings.run_dir), {d.id for d in kept}
    rounds = [
        r
        for r in store.iter_records(subjects.STAGE_ROUNDS, subjects.SubjectRound)
        if r.discipline_id in kept_ids
    ]
    merged = subjects.merge_rounds(rounds, settings.subjects.merge_threshold, settings.subjects.max_subjects)
    added = store.append(subjects.STAGE, merged.subjects)
    report.extra = {
        "proposals": merged.proposals,
        "duplicates_merged": merged.merged,
        "subjects": len(merged.subjects),
        "subjects_new": added,
    }
    report.stage = subjects.STAGE
    return _finish(settings, report)


async def _per_record(settings: Settings, stage: str, source: str, work: StageWork) -> StageReport:
    """One task per kept record of the `source` stage; each record is its own task, so resume is by its id."""
    report = await _run(
        settings, stage, lambda: kept_records(settings, source), work, count_kept(settings, source)
    )
    return _finish(settings, report)


async def run_syllabi(settings: Settings) -> StageReport:
    """One syllabus per kept subject."""
    return await _per_record(settings, syllabus.STAGE, subjects.STAGE, syllabus.write_syllabus)


async def run_questions(settings: Settings) -> StageReport:
    """`questions_per_syllabus` questions per kept syllabus, each from its own draw."""
    total = count_kept(settings, syllabus.STAGE) * settings.homework.questions_per_syllabus
    report = await _run(
        settings, homework.STAGE, lambda: question_tasks(settings), homework.write_question, total
    )
    return _finish(settings, report)


async def run_answers(settings: Settings) -> StageReport:
    """One answer per kept question."""
    return await _per_record(settings, answers.STAGE, homework.STAGE, answers.write_answer)


RUNNERS: dict[str, Callable[[Settings], Awaitable[StageReport]]] = {
    "taxonomy": run_taxonomy,
    "subjects": run_subjects,
    "syllabi": run_syllabi,
    "questions": run_questions,
    "answers": run_answers,
}


async def run_until(settings: Settings, last: str = "answers") -> dict[str, StageReport]:
    """Run the stages in order up to and including `last` (each resumes where it stopped)."""
    reports = {}
    for stage in STAGES[: STAGES.index(last) + 1]:
        reports[stage] = await RUNNERS[stage](settings)
    return reports
