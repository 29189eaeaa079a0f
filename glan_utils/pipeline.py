"""One function per generation stage, for notebooks and the CLI: estimate, run (resumably), summarise.

Each `run_*` reads the previous stage's records from the run directory, keeps only work under the disciplines
kept by the taxonomy review, runs the calls through `run_stage` (resume by task id, failures kept) and returns
a `StageReport`. When every task of a stage is already done, no client (and no embedded server) is even
started.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glan_utils import answers, homework, subjects, syllabus, taxonomy
from glan_utils.config import Settings, load_settings
from glan_utils.generation import Tally
from glan_utils.ledger import Estimate, Totals, estimate
from glan_utils.llm import LLMClient, open_client
from glan_utils.prompts import RenderedPrompt
from glan_utils.records import ClassSession, Question, Subject, Syllabus, TaxonomyNode
from glan_utils.review import Review, apply_review, disciplines, load_reviews, merge, reviews_dir
from glan_utils.stage import StageSummary, run_stage
from glan_utils.store import RunStore

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


def notebook_settings(config_path: str | None, parameters: dict[str, Any]) -> Settings:
    """Settings from a notebook's papermill parameters: dotted keys, None meaning "keep the file/default"."""
    return load_settings(config_path, {k: v for k, v in parameters.items() if v is not None})


def open_store(settings: Settings) -> RunStore:
    store = RunStore(settings.run_dir)
    store.write_config(settings.snapshot())
    return store


StageWork = Callable[[LLMClient, Any, Settings, Tally], Awaitable[Any]]


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
    store, tally = open_store(settings), Tally()
    done = store.done_task_ids(stage)
    if all(task.id in done for task in make_tasks()):
        summary = await run_stage(store, stage, make_tasks(), _never, concurrency=1, total=total)
        return StageReport(stage, summary)
    async with open_client(settings, stage=stage) as client:
        summary = await run_stage(
            store,
            stage,
            make_tasks(),
            lambda t: work(client, t, settings, tally),
            concurrency=settings.llm.concurrency,
            total=total,
        )
        totals = Totals(**vars(client.ledger.totals))
    return StageReport(stage, summary, totals, tally.repaired)


def _finish(settings: Settings, report: StageReport) -> StageReport:
    RunStore(settings.run_dir).update_manifest(report.stage, **report.as_dict())
    return report


# ----- taxonomy -----


async def run_taxonomy(settings: Settings) -> StageReport:
    """Load the user's taxonomy file, or generate fields, sub-fields per field, disciplines per sub-field."""
    store = open_store(settings)
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


def review_path(settings: Settings) -> Path | None:
    """The review to apply: `taxonomy.review_file`, else the run's `reviews/` folder if a review was saved."""
    if settings.taxonomy.review_file:
        return Path(settings.taxonomy.review_file)
    folder = reviews_dir(settings.run_dir)
    return folder if folder.is_dir() and any(folder.glob("*.json")) else None


def current_review(settings: Settings) -> Review | None:
    path = review_path(settings)
    return merge(load_reviews(path)) if path else None


def kept_taxonomy(settings: Settings) -> list[TaxonomyNode]:
    """The taxonomy after review (all nodes accepted when there is none)."""
    nodes = RunStore(settings.run_dir).iter_records(taxonomy.STAGE)
    return apply_review(nodes, current_review(settings))


def kept_disciplines(settings: Settings) -> list[TaxonomyNode]:
    return disciplines(kept_taxonomy(settings))


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


def kept_records(settings: Settings, stage: str) -> Iterator[Any]:
    """Stream a stage's records that still belong to a kept discipline (a later review may drop some)."""
    kept_ids = {d.id for d in kept_disciplines(settings)}
    return (r for r in RunStore(settings.run_dir).iter_records(stage) if r.discipline_id in kept_ids)


def count_kept(settings: Settings, stage: str) -> int:
    return sum(1 for _ in kept_records(settings, stage))


async def run_syllabi(settings: Settings) -> StageReport:
    """One syllabus per kept subject."""
    report = await _run(
        settings,
        syllabus.STAGE,
        lambda: (syllabus.SyllabusTask(s) for s in kept_records(settings, subjects.STAGE)),
        syllabus.write_syllabus,
        count_kept(settings, subjects.STAGE),
    )
    return _finish(settings, report)


def question_tasks(settings: Settings) -> Iterator[homework.QuestionTask]:
    """Every planned question, streamed: `questions_per_syllabus` fresh draws per kept syllabus."""
    paths = {d.id: d.path for d in kept_disciplines(settings)}
    cfg = settings.homework
    for s in kept_records(settings, syllabus.STAGE):
        field, subfield = paths[s.discipline_id][:2]
        for d in homework.plan(s, cfg.questions_per_syllabus, cfg.challenging_ratio, settings.seed):
            yield homework.QuestionTask(s, d, field=field, subfield=subfield)


async def run_questions(settings: Settings) -> StageReport:
    """`questions_per_syllabus` questions per kept syllabus, each from its own draw."""
    total = count_kept(settings, syllabus.STAGE) * settings.homework.questions_per_syllabus
    report = await _run(
        settings, homework.STAGE, lambda: question_tasks(settings), homework.write_question, total
    )
    return _finish(settings, report)


async def run_answers(settings: Settings) -> StageReport:
    """One answer per kept question."""
    report = await _run(
        settings,
        answers.STAGE,
        lambda: (answers.AnswerTask(q) for q in kept_records(settings, homework.STAGE)),
        answers.write_answer,
        count_kept(settings, homework.STAGE),
    )
    return _finish(settings, report)


# ----- previews and estimates, shown before any spending -----

EXAMPLE_DISCIPLINE = TaxonomyNode(
    name="Linear Algebra", level="discipline", path=["Mathematics", "Algebra", "Linear Algebra"]
)


def _first(settings: Settings, stage: str) -> Any:
    store = RunStore(settings.run_dir)
    return next(iter(store.iter_records(stage)), None) if store.records_path(stage).exists() else None


def preview_prompt(settings: Settings, stage: str) -> RenderedPrompt:
    """The first prompt the stage would send (with an example input when the previous stage has not run)."""
    language = settings.language
    if stage == "taxonomy":
        return taxonomy.expand_prompt(
            taxonomy.ExpandTask(None, "field", settings.taxonomy.n_fields), language
        )
    discipline = next(iter(kept_disciplines(settings)), None) or EXAMPLE_DISCIPLINE
    if stage == "subjects":
        return subjects.subjects_prompt(discipline, settings)
    subject = _first(settings, subjects.STAGE) or Subject(
        discipline_id=discipline.id,
        discipline=discipline.name,
        subject_name="Vector Spaces",
        level="undergraduate",
    )
    if stage == "syllabi":
        return syllabus.syllabus_prompt(subject, settings)
    if stage == "questions":
        task = next(iter(question_tasks(settings)), None) or homework.QuestionTask(
            _example_syllabus(subject), homework.Draw(0, "basic", (1,), ("basis",))
        )
        return homework.question_prompt(task, language)
    question = _first(settings, homework.STAGE) or Question(
        syllabus_id="-",
        subject_id=subject.id,
        discipline_id=discipline.id,
        discipline=discipline.name,
        subject=subject.subject_name,
        level=subject.level,
        difficulty="basic",
        session_indices=[1],
        concepts=["basis"],
        sample_index=0,
        question="Show that the columns of an invertible matrix form a basis.",
    )
    return answers.answer_prompt(question, language)


def _example_syllabus(subject: Subject) -> Syllabus:
    return Syllabus(
        subject_id=subject.id,
        discipline_id=subject.discipline_id,
        discipline=subject.discipline,
        subject_name=subject.subject_name,
        level=subject.level,
        sessions=[ClassSession(index=1, title="Bases", key_concepts=["basis", "span"])],
    )


def planned_calls(settings: Settings, stage: str) -> int:
    """Calls the stage will make at most: from earlier records if present, else from the sizes."""
    tax, sub = settings.taxonomy, settings.subjects
    store = RunStore(settings.run_dir)
    n_disc = (
        len(kept_disciplines(settings))
        if store.records_path("taxonomy").exists()
        else tax.n_fields * tax.n_subfields * tax.n_disciplines
    )
    per_discipline = min(sub.max_subjects or sub.rounds * sub.per_round, sub.rounds * sub.per_round)
    n_subjects = (
        count_kept(settings, subjects.STAGE)
        if store.records_path(subjects.STAGE).exists()
        else n_disc * per_discipline
    )
    n_syllabi = (
        count_kept(settings, syllabus.STAGE) if store.records_path(syllabus.STAGE).exists() else n_subjects
    )
    n_questions = (
        count_kept(settings, homework.STAGE)
        if store.records_path(homework.STAGE).exists()
        else n_syllabi * settings.homework.questions_per_syllabus
    )
    return {
        "taxonomy": 0 if tax.source else 1 + tax.n_fields + tax.n_fields * tax.n_subfields,
        "subjects": n_disc * sub.rounds,
        "syllabi": n_subjects,
        "questions": n_syllabi * settings.homework.questions_per_syllabus,
        "answers": n_questions,
    }[stage]


def estimate_stage(settings: Settings, stage: str) -> Estimate:
    """Calls x (first prompt's tokens, max_tokens) x price: an upper bound, shown before spending."""
    max_tokens = {
        "taxonomy": settings.taxonomy.max_tokens,
        "subjects": settings.subjects.max_tokens,
        "syllabi": settings.syllabus.max_tokens,
        "questions": settings.homework.max_tokens,
        "answers": settings.answers.max_tokens,
    }[stage]
    model = (settings.answers.model if stage == "answers" else None) or settings.llm.model or "embedded"
    prompt_chars = sum(len(m["content"]) for m in preview_prompt(settings, stage).messages)
    return estimate(
        planned_calls(settings, stage), prompt_chars // 4 + 1, max_tokens, model, settings.llm.prices
    )


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
