"""The generation stages as one pipeline, for notebooks and the CLI: run, estimate, preview.

Every stage resumes where it stopped (records keyed by task id, failures kept), works only under the disciplines
kept by the taxonomy review, and opens no client (and no embedded server) when all its tasks are done. Estimates
(`estimate_stage`, `preview_prompt`) and input selection (`kept_*`) are re-exported so a notebook needs only this
module and the stage it shows.
"""

from __future__ import annotations

from glan_utils.settings import Settings
from glan_utils.stages import STAGES
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
from glan_utils.stages.registry import StageReport, open_store
from glan_utils.stages.selection import (
    count_kept,
    current_review,
    kept_disciplines,
    kept_records,
    kept_taxonomy,
    review_path,
)

__all__ = [
    "RUNNERS",
    "STAGES",
    "StageReport",
    "against_budget",
    "count_kept",
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
    "review_path",
    "run",
    "run_until",
    "stage_plans",
]

RUNNERS = {name: stage.run for name, stage in STAGES.items()}


async def run(settings: Settings, stage: str) -> StageReport:
    """Run one stage (resuming where it stopped) and return its report."""
    return await STAGES[stage].run(settings)


async def run_until(settings: Settings, last: str = "answers") -> dict[str, StageReport]:
    """Run the stages in order up to and including `last` (each resumes where it stopped)."""
    names = list(STAGES)
    return {name: await run(settings, name) for name in names[: names.index(last) + 1]}
