"""Before spending: the calls each stage will make, their cost, and the first prompt it would send.

One planner serves `glan estimate`, the notebooks' "before spending" cells and the runs: each stage's
`plan(settings, inputs)` sizes it from what the previous stage hands it. Planning either reads a run (a stage
that has records hands on what it really kept, so the estimate made after a stage is exact for the next one) or
plans from the settings alone (every stage sized from the previous stage's plan, an upper bound where replies
decide the size). Tokens are the first prompt's length and `max_tokens` (an upper bound). Before a stage's
inputs exist, an example input stands in for the preview.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from glan_utils.llm.ledger import Estimate, estimate, price_of
from glan_utils.llm.prompts import RenderedPrompt
from glan_utils.runs.store import RunStore
from glan_utils.settings import Settings
from glan_utils.stages import STAGES
from glan_utils.stages.registry import Plan


@dataclass(frozen=True)
class StagePlan:
    """One stage's plan and where its input size came from: 'run' (records kept so far) or 'settings'."""

    plan: Plan
    inputs: int
    inputs_from: str


def plans(settings: Settings, read_run: bool = True) -> dict[str, Plan]:
    """Every stage's plan, in pipeline order (see `stage_plans`)."""
    return {name: p.plan for name, p in stage_plans(settings, read_run).items()}


def stage_plans(settings: Settings, read_run: bool = True) -> dict[str, StagePlan]:
    """Every stage's plan; with `read_run`, a stage whose previous stage has records is sized by what that stage
    kept so far, else by the previous stage's plan. Only the counts a later stage needs are read."""
    store, out = RunStore(settings.run_dir), {}
    previous = None
    for name, stage in STAGES.items():
        inputs, source = 0, "settings"
        if previous is not None:
            if read_run and store.records_path(previous.name).exists():
                inputs, source = previous.handed_on(settings), "run"
            else:
                inputs = out[previous.name].plan.outputs
        out[name] = StagePlan(stage.plan(settings, inputs), inputs, source)
        previous = stage
    return out


def planned_calls(settings: Settings, stage: str, read_run: bool = True) -> int:
    """Calls the stage will make at most."""
    return plans(settings, read_run)[stage].calls


def preview_prompt(settings: Settings, stage: str) -> RenderedPrompt:
    """The first prompt the stage would send (with an example input when the previous stage has not run)."""
    return STAGES[stage].preview(settings)


def estimate_stage(settings: Settings, stage: str, read_run: bool = True) -> Estimate:
    """Calls x (first prompt's tokens, max_tokens) x price: an upper bound, shown before spending."""
    return estimate_plan(settings, stage, planned_calls(settings, stage, read_run))


def estimate_plan(settings: Settings, stage: str, calls: int, typical: bool = False) -> Estimate:
    """`calls` of a stage priced at its first prompt's tokens and its `max_tokens`, an upper bound (with `typical`:
    a typical reply's length where the stage states one), at the batch price in batch mode, where every uncached
    call goes through the Batch API first."""
    spec = STAGES[stage]
    prompt_chars = sum(len(m["content"]) for m in preview_prompt(settings, stage).messages)
    output = spec.max_tokens(settings)
    output = min(output, spec.typical_tokens or output) if typical else output
    est = estimate(calls, prompt_chars // 4 + 1, output, spec.model(settings), settings.llm.prices)
    if settings.llm.mode == "batch":
        est = replace(est, cost_usd=est.cost_usd * settings.batch.discount)
    return est


def plan_source(settings: Settings, read_run: bool = True) -> str:
    """One line saying what the plan was made from: the run it read, or the settings alone."""
    store = RunStore(settings.run_dir)
    done = [name for name in STAGES if store.records_path(name).exists()] if read_run else []
    if not done:
        return f"planned from settings (no records read{'' if read_run else '; no run given'})"
    return f"read run '{settings.run_name}' ({settings.run_dir}): records of {', '.join(done)}"


def against_budget(settings: Settings, estimates: dict[str, Estimate]) -> list[str]:
    """The plan beside `llm.max_cost_usd` / `llm.max_tokens_total`: whether it fits, else the stage it stops in;
    and a warning for a priced run whose model has no price (its calls would count as $0)."""
    llm, lines = settings.llm, []
    caps = [
        ("llm.max_cost_usd", llm.max_cost_usd, lambda e: e.cost_usd, "${:,.2f}"),
        ("llm.max_tokens_total", llm.max_tokens_total, lambda e: e.prompt_tokens + e.completion_tokens, "{:,.0f}"),
    ]
    for key, cap, amount, fmt in caps:
        if cap is None:
            continue
        spent, stop = 0.0, None
        for stage, est in estimates.items():
            if stop is None and spent + amount(est) > cap:
                fits = int((cap - spent) / (amount(est) / est.calls)) if est.calls else 0
                stop = f"the run stops in {stage} after about {fits:,} of its {est.calls:,} calls"
            spent += amount(est)
        verdict = stop or "the whole plan fits"
        lines.append(f"budget: plan {fmt.format(spent)} (upper bound) vs {key} {fmt.format(cap)}: {verdict}")
    if llm.max_cost_usd is not None or llm.prices:
        unpriced = sorted({e.model for e in estimates.values() if e.calls and price_of(e.model, llm.prices) is None})
        lines += [f"warning: no price for model '{m}' in llm.prices: its calls count as $0" for m in unpriced]
    return lines
