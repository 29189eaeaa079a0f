"""Regenerate one node of the taxonomy: new questions, answers and verdicts for one subject or discipline only.

When the quality figures show a weak branch, a researcher reruns that subtree with a new seed or another model
instead of the whole run. Its questions are redrawn at fresh sample indices (`round x SAMPLE_STRIDE + i`), so
every call is new (and paid) while the rest of the run is untouched (and, through the cache, free). The old
questions and pairs of the node are listed in `superseded.jsonl` (append-only, ids only): they stay on disk as
every record does, the quality stage no longer judges them and the data set leaves them out. Each regeneration is
one line of `regenerations.jsonl` (node, round, seed, model, counts, cost). The run's `config.yaml` keeps the
run's own settings; the regeneration's are on its line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from glan_utils.core.errors import InputError
from glan_utils.core.jsonl import JsonlWriter, iter_jsonl
from glan_utils.core.records import utc_now
from glan_utils.runs.store import RunStore
from glan_utils.settings import Settings
from glan_utils.stages import answers, quality, questions
from glan_utils.stages.questions import planned_task
from glan_utils.stages.registry import StageReport, run_pending
from glan_utils.stages.selection import kept_disciplines, kept_records
from glan_utils.stages.superseded import supersede, superseded_ids

REGENERATIONS = "regenerations.jsonl"
SAMPLE_STRIDE = 10_000
"""Sample indices of round r start at r x SAMPLE_STRIDE (a syllabus has far fewer questions than that)."""


def regenerations(run_dir: Path) -> list[dict[str, Any]]:
    """Every regeneration of the run, oldest first."""
    return list(iter_jsonl(Path(run_dir) / REGENERATIONS))


def _node_level(settings: Settings, node_id: str) -> str:
    if any(d.id == node_id for d in kept_disciplines(settings)):
        return "discipline"
    if any(s.subject_id == node_id for s in kept_records(settings, "syllabi")):
        return "subject"
    raise InputError(f"regenerate: {node_id!r} is neither a kept discipline nor a subject with a syllabus")


def _under(record: Any, node_id: str) -> bool:
    return node_id in (record.discipline_id, record.subject_id)


def _question_tasks(settings: Settings, node_id: str, offset: int) -> Iterator[Any]:
    """The node's syllabi redrawn at sample indices offset, offset+1, ... with the settings' seed."""
    paths = {d.id: d.path for d in kept_disciplines(settings)}
    cfg = settings.questions
    types = cfg.question_types
    for syllabus in kept_records(settings, "syllabi"):
        if not _under(syllabus, node_id):
            continue
        field, subfield = paths[syllabus.discipline_id][:2]
        for index in range(offset, offset + cfg.questions_per_syllabus):
            yield planned_task(settings, syllabus, index, types, field=field, subfield=subfield)


def _with(settings: Settings, seed: int | None, model: str | None) -> Settings:
    update: dict[str, Any] = {}
    if seed is not None:
        update["seed"] = seed
    if model:
        update["llm"] = settings.llm.model_copy(update={"model": model})
        update["answers"] = settings.answers.model_copy(update={"model": model})
    return settings.model_copy(update=update)


async def regenerate(
    settings: Settings, node_id: str | None, *, seed: int | None = None, model: str | None = None, judge: bool = True
) -> dict[str, Any]:
    """Redraw, answer and (with `judge`) judge one subject or discipline; its old records leave the data set.

    `seed` reseeds the concept draws; `model` answers (and writes questions) with another model. Returns the
    line written to `regenerations.jsonl`; `node_id=None` does nothing (a notebook's default).
    """
    if node_id is None:
        return {"node_id": None, "note": "no node chosen: set regenerate_node to a node_id from the tables above"}

    level = _node_level(settings, node_id)
    store = RunStore(settings.run_dir)
    config = store.read_config()
    round_ = 1 + sum(1 for r in regenerations(settings.run_dir) if r["node_id"] == node_id)
    gone = superseded_ids(settings.run_dir)
    old = [r.id for stage in ("questions", "answers") for r in store.iter_records(stage) if _under(r, node_id)]
    old = [i for i in old if i not in gone]
    local = _with(settings, seed, model)
    tasks = list(_question_tasks(local, node_id, round_ * SAMPLE_STRIDE))
    reports = [
        await run_pending(
            local, "questions", "questions", lambda: iter(tasks), questions.write_question, same_run=False
        )
    ]
    new_ids = {t.id for t in tasks}
    new_questions = [q for q in store.iter_records("questions") if q.task_id in new_ids]
    reports.append(
        await run_pending(
            local, "answers", "answers", lambda: iter(new_questions), answers.write_answer, same_run=False
        )
    )
    new_pairs = [p for p in store.iter_records("answers") if p.question_id in {q.id for q in new_questions}]
    if judge:
        reports.append(
            await run_pending(
                quality.judge_settings(local),
                "quality",
                "quality",
                lambda: iter(new_pairs),
                quality.judge_pair,
                same_run=False,
            )
        )
    store.write_config(config or settings.snapshot())  # the run's own settings stay in config.yaml
    return _record(settings, node_id, level, round_, local, model, old, new_questions, new_pairs, reports)


def _record(
    settings: Settings,
    node_id: str,
    level: str,
    round_: int,
    local: Settings,
    model: str | None,
    old: list[str],
    new_questions: list[Any],
    new_pairs: list[Any],
    reports: list[StageReport],
) -> dict[str, Any]:
    """Supersede the old records (only when the new ones exist) and append the regeneration's line."""
    if new_pairs:
        supersede(settings.run_dir, old, node_id, round_)
    line = {
        "node_id": node_id,
        "level": level,
        "round": round_,
        "seed": local.seed,
        "model": model,
        "superseded": len(old) if new_pairs else 0,
        "questions": len(new_questions),
        "pairs": len(new_pairs),
        "calls": sum(r.llm.calls for r in reports),
        "failed": sum(r.summary.failed for r in reports),
        "cost_usd": round(sum(r.llm.cost_usd for r in reports), 6),
        "created_at": utc_now().isoformat(),
    }
    with JsonlWriter(settings.run_dir / REGENERATIONS) as out:
        out.write(line)
    return line
