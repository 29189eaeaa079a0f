"""Before spending on a taxonomy edit: what the next run will generate, drop and keep.

The run's plan (`plan.json`, as the last stage run left it) is compared with the taxonomy the settings and the
review now give (the `taxonomy.source` file resolved afresh, so an edit shows before any stage runs). A discipline
new to the plan is generated (its calls and dollars are the stages' plans for that many disciplines) unless its
records are already on disk (an undone removal: free); a dropped one takes its pairs out of the data set; a
renamed or moved one keeps everything. `glan estimate --run R` and notebook 02's "before spending" cell print it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from glan_utils.core.jsonl import iter_jsonl
from glan_utils.runs.store import RunStore
from glan_utils.settings import Settings
from glan_utils.stages import STAGES
from glan_utils.stages.estimates import estimate_plan
from glan_utils.stages.review import apply_review, disciplines
from glan_utils.stages.selection import current_nodes, current_review, kept_disciplines, read_plan
from glan_utils.stages.subjects import STAGE_ROUNDS
from glan_utils.stages.taxonomy import file_nodes


@dataclass
class TaxonomyDiff:
    """Disciplines (as paths) the edit generates, brings back, drops or renames, and what that costs."""

    generate: list[str] = field(default_factory=list)
    restore: list[str] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)
    rename: list[str] = field(default_factory=list)
    keep: int = 0
    calls: int = 0
    cost_usd: float = 0.0
    pairs_leaving: int = 0
    pairs_returning: int = 0

    def lines(self) -> list[str]:
        """What the estimate prints: one summary line, then one line per changed discipline."""
        if not (self.generate or self.restore or self.drop or self.rename):
            return [f"taxonomy: unchanged since the last run ({self.keep} disciplines kept)"]
        head = (
            f"taxonomy edit: {len(self.generate)} disciplines to generate (~{self.calls:,} calls, "
            f"~${self.cost_usd:,.2f}), {len(self.restore)} back from disk (0 calls, {self.pairs_returning:,} "
            f"pairs return), {len(self.drop)} dropped ({self.pairs_leaving:,} pairs leave the data set), "
            f"{len(self.rename)} renamed or moved (0 calls), {self.keep} kept"
        )
        rows = [("generate", self.generate), ("restore", self.restore), ("drop", self.drop), ("rename", self.rename)]
        return [head, *(f"  {what}: {item}" for what, items in rows for item in items)]


def taxonomy_diff(settings: Settings) -> TaxonomyDiff:
    """What the next run does with the taxonomy the settings and review give now, against the run's plan."""
    before = read_plan(settings.run_dir).get("disciplines") or {d.id: d.path for d in kept_disciplines(settings)}
    nodes = file_nodes(settings) if settings.taxonomy.source else current_nodes(settings)
    after = {d.id: d.path for d in disciplines(apply_review(nodes, current_review(settings)))}
    store = RunStore(settings.run_dir)
    started = {row["discipline_id"] for row in iter_jsonl(store.records_path(STAGE_ROUNDS))}
    pairs = Counter(row["discipline_id"] for row in iter_jsonl(store.records_path("answers")))
    shown = " > ".join
    diff = TaxonomyDiff(keep=sum(1 for i in after if i in before))
    diff.generate = [shown(p) for i, p in after.items() if i not in before and i not in started]
    diff.restore = [shown(p) for i, p in after.items() if i not in before and i in started]
    diff.drop = [shown(p) for i, p in before.items() if i not in after]
    diff.rename = [f"{shown(before[i])} -> {shown(p)}" for i, p in after.items() if i in before and before[i] != p]
    diff.pairs_leaving = sum(pairs[i] for i in before if i not in after)
    diff.pairs_returning = sum(pairs[i] for i in after if i not in before)
    diff.calls, diff.cost_usd = subtree_cost(settings, len(diff.generate))
    return diff


def subtree_cost(settings: Settings, count: int) -> tuple[int, float]:
    """Calls and dollars (upper bound) of generating `count` new disciplines through every later stage."""
    calls, cost, inputs = 0, 0.0, count
    for name, stage in list(STAGES.items())[1:]:
        plan = stage.plan(settings, inputs)
        calls += plan.calls
        cost += estimate_plan(settings, name, plan.calls).cost_usd if plan.calls else 0.0
        inputs = plan.outputs
    return calls, cost
