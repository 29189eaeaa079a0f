"""The generation stages as one pipeline, for notebooks and the CLI: run, estimate, preview.

Every stage resumes where it stopped (records keyed by task id, failures kept), works only under the disciplines
kept by the taxonomy review, and opens no client (and no embedded server) when all its tasks are done. Estimates
(`estimate_stage`, `preview_prompt`) and input selection (`kept_*`) are re-exported so a notebook needs only this
module and the stage it shows.
"""

from __future__ import annotations

from glan_utils.core.errors import InputError
from glan_utils.core.paths import MANIFEST, REPLACED
from glan_utils.core.records import utc_now
from glan_utils.runs.store import RunStore
from glan_utils.settings import Settings
from glan_utils.stages import STAGES
from glan_utils.stages.edits import TaxonomyDiff, taxonomy_diff
from glan_utils.stages.estimates import (
    against_budget,
    estimate_plan,
    estimate_stage,
    plan_source,
    planned_calls,
    plans,
    preview_prompt,
    stage_plans,
)
from glan_utils.stages.registry import (
    SHAPING_SETTINGS,
    StageReport,
    check_identity,
    has_records,
    identity_changes,
    open_store,
)
from glan_utils.stages.selection import (
    count_kept,
    current_nodes,
    current_review,
    kept_disciplines,
    kept_records,
    kept_taxonomy,
    record_plan,
    review_path,
)

__all__ = [
    "RUNNERS",
    "STAGES",
    "StageReport",
    "TaxonomyDiff",
    "against_budget",
    "check_inputs",
    "check_run",
    "count_kept",
    "current_nodes",
    "current_review",
    "estimate_plan",
    "estimate_stage",
    "kept_disciplines",
    "kept_records",
    "kept_taxonomy",
    "open_store",
    "plan_source",
    "planned_calls",
    "plans",
    "preview_prompt",
    "record_plan",
    "replan",
    "review_path",
    "run",
    "run_until",
    "stage_plans",
    "taxonomy_diff",
]

RUNNERS = {name: stage.run for name, stage in STAGES.items()}


async def run(settings: Settings, stage: str) -> StageReport:
    """Run one stage (resuming where it stopped) and return its report; InputError, before anything is written,
    when the stage it reads has no records in this run."""
    if (needs := STAGES[stage].needs) and not _has(settings, needs):
        raise InputError(_missing(settings, needs))
    wiring = {"notebook": STAGES[stage].notebook, "needs": needs, "parts": list(STAGES[stage].parts)}
    RunStore(settings.run_dir).update_manifest(stage, **wiring)  # what `core.stale` reads, without the stages
    return await STAGES[stage].run(settings)


def _has(settings: Settings, stage: str) -> bool:
    """Whether the run has records of `stage` (without creating its directory, as a RunStore would)."""
    path = settings.run_dir / f"{stage}.jsonl"
    return path.is_file() and path.stat().st_size > 0


def _missing(settings: Settings, needs: str) -> str:
    return f"run '{settings.run_name}' has no {needs}: run {STAGES[needs].notebook} first ({settings.run_dir})"


def check_inputs(settings: Settings, notebook: str) -> None:
    """Before `glan run` starts at `notebook`: InputError when a stage of it reads records that an earlier
    notebook writes and this run does not have."""
    for stage in STAGES.values():
        needs = stage.needs
        if stage.notebook == notebook and needs and STAGES[needs].notebook < notebook and not _has(settings, needs):
            raise InputError(_missing(settings, needs))


async def run_until(settings: Settings, last: str = "answers") -> dict[str, StageReport]:
    """Run the stages in order up to and including `last` (each resumes where it stopped)."""
    names = list(STAGES)
    return {name: await run(settings, name) for name in names[: names.index(last) + 1]}


def _parts(stage: str) -> tuple[str, ...]:
    """The records files of a stage: its sub-stages' first, then its own."""
    return (*STAGES[stage].parts, stage)


def _with_records(store: RunStore) -> list[str]:
    return [name for name in STAGES if any(store.has_records(part) for part in _parts(name))]


def check_run(settings: Settings) -> None:
    """Before a run is continued: RunChanged when settings that shaped its records differ from its snapshot."""
    if not (settings.run_dir / MANIFEST).exists():
        return
    store = RunStore(settings.run_dir)
    if has_records(store):
        check_identity(store, settings, _with_records(store))


def replan(settings: Settings) -> str | None:
    """Make a run agree with new settings: the records of the first stage they change and of every later stage
    move to `replaced/<time>/` (kept, not deleted), their manifest entries and those of their notebooks and later
    ones are dropped (so they run again), and `config.yaml` takes the new settings, the old ones going to its
    history with the change. Returns one line saying so, or None when nothing that shapes records changed."""
    store = RunStore(settings.run_dir)
    changes = identity_changes(store.read_config(), settings.snapshot(), _with_records(store))
    if not changes:
        return None
    order = list(STAGES)
    shared = any(key in SHAPING_SETTINGS for key in changes)
    affected = order[0 if shared else min(order.index(key.split(".")[0]) for key in changes) :]
    folder = store.path(REPLACED) / utc_now().strftime("%Y%m%dT%H%M%S")
    moved, touched = 0, []
    for stage in affected:
        for part in _parts(stage):
            moved += store.line_count(part)
            for path in [store.records_path(part), store.failures_path(part), *store.root.glob(f".{part}.done.idx*")]:
                if path.exists():
                    folder.mkdir(parents=True, exist_ok=True)
                    path.rename(folder / path.name)
                    touched += [stage] if stage not in touched else []
    first = STAGES[affected[0]].notebook
    entries = store.read_manifest().get("stages", {})
    notebooks = [name for name, info in entries.items() if info.get("kind") == "notebook"]
    store.forget([*(p for s in affected for p in _parts(s)), *(nb for nb in notebooks if nb >= first)])
    keys = ", ".join(f"{key} {was!r} -> {now!r}" for key, (was, now) in changes.items())
    store.write_config(settings.snapshot(), note=f"replan: {keys}")
    where = f"{moved:,} records of {', '.join(touched)} moved to {folder}" if touched else "no records to move"
    return f"replanned run '{settings.run_name}' ({keys}): {where}"
