"""Help for a reviewer: propose more children for a thin branch, and flag the same discipline under two parents.

`propose_children` asks the model for a node's children exactly as the taxonomy stage does (same prompt, Caller,
response cache and cost ledger, filed under the taxonomy stage), each attempt a new sample (the widget asks anew
on every click; the same attempt again costs nothing), and every call is in the run's bill. The candidates are
suggestions only: nothing is stored until the reviewer accepts one, which becomes an `Addition` in their review.

`cross_branch_duplicates` compares node names with sentence embeddings (`llm.embeddings`) and reports pairs at
the same level under different parents whose cosine similarity reaches the threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from glan_utils.core.errors import InputError
from glan_utils.core.records import Failure, NodeLevel, TaxonomyNode, child_level
from glan_utils.llm.embeddings import cosine_matrix, embed
from glan_utils.runs.client import run_client
from glan_utils.settings import Settings
from glan_utils.stages.base import Caller
from glan_utils.stages.taxonomy import NAME, ExpandTask, expand, level_size

DUPLICATE_THRESHOLD = 0.85  # all-MiniLM-L6-v2: paraphrased course names score above ~0.8, unrelated ones below 0.5


@dataclass(frozen=True)
class Proposals:
    """What one "propose more children" call gave: new candidates (existing children left out) and its cost."""

    parent: TaxonomyNode
    suggestions: list[TaxonomyNode]
    failure: Failure | None
    cached: bool
    cost_usd: float

    def summary(self) -> str:
        if self.failure is not None:
            return f"no suggestions for {self.parent.name}: {self.failure.reason}"
        spent = "cache hit, $0" if self.cached else f"${self.cost_usd:.4f}"
        return f"{len(self.suggestions)} suggestions for {self.parent.name} ({spent})"


async def propose_children(
    settings: Settings, parent: TaxonomyNode, siblings: Iterable[str] = (), count: int | None = None, attempt: int = 0
) -> Proposals:
    """Ask the model for `count` children of `parent` (default: the stage's size for that level); names in
    `siblings` (the children it has now) are dropped from the suggestions. Attempt n is the n-th sample of the
    question (attempt 0 is the taxonomy stage's own call), so each "propose more" asks anew."""
    level = child_level(parent.level)
    if level is None:
        raise InputError(f"{parent.name} is a discipline: disciplines have no children in the taxonomy")
    task = ExpandTask(parent, level, count or level_size(settings, level))
    async with run_client(settings, stage=NAME) as client:
        caller = Caller(client, NAME)
        result = await expand(caller, task, settings, sample_index=attempt)
        cost = client.ledger.totals.cost_usd
    if isinstance(result, Failure):
        return Proposals(parent, [], result, bool(caller.tally.cached), cost)
    known = {name.casefold() for name in siblings}
    fresh = [n for n in result if n.name.casefold() not in known]
    return Proposals(parent, fresh, None, bool(caller.tally.cached), cost)


@dataclass(frozen=True)
class DuplicatePair:
    """Two nodes of one level under different parents whose names mean (nearly) the same thing."""

    first: TaxonomyNode
    second: TaxonomyNode
    similarity: float


Embedder = Callable[[Sequence[str]], np.ndarray]


def cross_branch_duplicates(
    nodes: Iterable[TaxonomyNode],
    threshold: float = DUPLICATE_THRESHOLD,
    level: NodeLevel = "discipline",
    embedder: Embedder = embed,
) -> list[DuplicatePair]:
    """Same-level pairs under different parents at cosine >= `threshold`, most similar first."""
    candidates = [n for n in nodes if n.level == level]
    if len(candidates) < 2:
        return []
    similar = cosine_matrix(embedder([n.name for n in candidates]))
    pairs = [
        DuplicatePair(candidates[i], candidates[j], float(similar[i, j]))
        for i, j in zip(*np.triu_indices(len(candidates), k=1), strict=True)
        if similar[i, j] >= threshold and candidates[i].parent_id != candidates[j].parent_id
    ]
    return sorted(pairs, key=lambda p: -p.similarity)
