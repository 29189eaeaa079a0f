"""Before spending: the calls each stage will make, their cost, and the first prompt it would send.

Each stage is sized from what the previous stage hands it: the kept records when that stage has run, else its own
plan. Tokens are the first prompt's length and `max_tokens` (an upper bound). Before a stage's inputs exist, an
example input stands in for the preview.
"""

from __future__ import annotations

from glan_utils.llm.ledger import Estimate, estimate
from glan_utils.llm.prompts import RenderedPrompt
from glan_utils.runs.store import RunStore
from glan_utils.settings import Settings
from glan_utils.stages import STAGES
from glan_utils.stages.registry import Plan


def plans(settings: Settings) -> dict[str, Plan]:
    """Every stage's plan, in pipeline order."""
    store, out = RunStore(settings.run_dir), {}
    previous = None
    for name, stage in STAGES.items():
        inputs = 0
        if previous is not None:
            done = store.records_path(previous.name).exists()
            inputs = previous.handed_on(settings) if done else out[previous.name].outputs
        out[name] = stage.plan(settings, inputs)
        previous = stage
    return out


def planned_calls(settings: Settings, stage: str) -> int:
    """Calls the stage will make at most."""
    return plans(settings)[stage].calls


def preview_prompt(settings: Settings, stage: str) -> RenderedPrompt:
    """The first prompt the stage would send (with an example input when the previous stage has not run)."""
    return STAGES[stage].preview(settings)


def estimate_stage(settings: Settings, stage: str) -> Estimate:
    """Calls x (first prompt's tokens, max_tokens) x price: an upper bound, shown before spending."""
    spec = STAGES[stage]
    prompt_chars = sum(len(m["content"]) for m in preview_prompt(settings, stage).messages)
    return estimate(
        planned_calls(settings, stage),
        prompt_chars // 4 + 1,
        spec.max_tokens(settings),
        spec.model(settings),
        settings.llm.prices,
    )
