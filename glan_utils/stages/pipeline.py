"""The generation stages as one pipeline, for notebooks and the CLI: settings, run, estimate, preview.

Every stage resumes where it stopped (records keyed by task id, failures kept), works only under the disciplines
kept by the taxonomy review, and opens no client (and no embedded server) when all its tasks are done. Estimates
(`estimate_stage`, `preview_prompt`) and input selection (`kept_*`) are re-exported so a notebook needs only this
module and the stage it shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from glan_utils.settings import Settings, load_settings
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
    "effective_settings",
    "estimate_plan",
    "estimate_stage",
    "kept_disciplines",
    "kept_records",
    "kept_taxonomy",
    "notebook_settings",
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


def notebook_settings(
    config_path: str | None, parameters: dict[str, Any], overrides: dict[str, Any] | None = None
) -> Settings:
    """Settings from a notebook's papermill parameters: dotted keys, None meaning "keep the lower layers".

    The one precedence: defaults (the demo's sizes) < the settings file < `GLAN_*` environment < the non-None
    parameters < `overrides` (dotted keys), so any setting can be changed from papermill or `glan run`. A relative
    `output_dir` is taken from the repository root when the kernel runs in `notebooks/` (as JupyterLab starts it),
    so interactive and batch runs share one `outputs/`.
    """
    values = {k: v for k, v in parameters.items() if v is not None} | dict(overrides or {})
    output_dir = Path(values.get("output_dir", "outputs"))
    here = Path.cwd()
    if not output_dir.is_absolute() and here.name == "notebooks" and (here.parent / "glan_utils").is_dir():
        values["output_dir"] = str(here.parent / output_dir)
    return load_settings(config_path, values)


def effective_settings(settings: Settings, *sections: str) -> str:
    """What a notebook's stage will run with, as YAML, printed before any call (run, sizes, model, sections)."""
    snapshot = settings.snapshot()
    shown = {
        "run": str(settings.run_dir),
        "model": settings.llm.model or "embedded",
        "base_url": settings.llm.base_url,
        **{name: snapshot[name] for name in sections},
    }
    return yaml.safe_dump(shown, sort_keys=False, allow_unicode=True).rstrip()


async def run(settings: Settings, stage: str) -> StageReport:
    """Run one stage (resuming where it stopped) and return its report."""
    return await STAGES[stage].run(settings)


async def run_until(settings: Settings, last: str = "answers") -> dict[str, StageReport]:
    """Run the stages in order up to and including `last` (each resumes where it stopped)."""
    names = list(STAGES)
    return {name: await run(settings, name) for name in names[: names.index(last) + 1]}
