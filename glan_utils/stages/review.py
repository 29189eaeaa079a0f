"""Human review of the taxonomy (paper §2.1): keep/remove/rename/add per node, majority merge, cascade.

A `Review` is one reviewer's decisions, saved as JSON so it can be shared; several reviews merge by majority
(a reviewer who left a node untouched votes to keep it; ties keep). Applying a review removes each removed
node with its whole subtree, renames nodes (their paths and ids follow) and adds new nodes; the next stage
expands only the kept disciplines.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from glan_utils.core.errors import InputError
from glan_utils.core.records import TaxonomyNode, child_level, utc_now

Action = Literal["keep", "remove", "rename"]


class Decision(BaseModel):
    """One reviewer's verdict on one node."""

    action: Action = "keep"
    new_name: str | None = None
    reviewer: str = ""
    at: datetime = Field(default_factory=utc_now)


class Addition(BaseModel):
    """A node a reviewer added under `parent_id`."""

    parent_id: str
    name: str = Field(min_length=1)
    reviewer: str = ""
    at: datetime = Field(default_factory=utc_now)


class Review(BaseModel):
    """Everything one reviewer decided; nodes without a decision are kept."""

    reviewer: str = ""
    decisions: dict[str, Decision] = Field(default_factory=dict)
    additions: list[Addition] = Field(default_factory=list)

    def decide(self, node_id: str, action: Action, new_name: str | None = None) -> None:
        self.decisions[node_id] = Decision(action=action, new_name=new_name, reviewer=self.reviewer)

    def add(self, parent_id: str, name: str) -> None:
        self.additions.append(Addition(parent_id=parent_id, name=name.strip(), reviewer=self.reviewer))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        return path


def reviews_dir(run_dir: str | Path) -> Path:
    """Where a run's saved reviews go; the next stage merges every file found there."""
    return Path(run_dir) / "reviews"


_REVIEW_LIST = TypeAdapter(list[Review])


def load_reviews(path: str | Path) -> list[Review]:
    """Reviews from one JSON file (a review or a list of them) or from every `*.json` in a directory."""
    path = Path(path)
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    reviews: list[Review] = []
    for file in files:
        try:
            data = file.read_text(encoding="utf-8")
            is_one = data.lstrip().startswith("{")
            reviews.extend([Review.model_validate_json(data)] if is_one else _REVIEW_LIST.validate_json(data))
        except FileNotFoundError:
            raise InputError(f"review file not found: {file}") from None
        except (ValidationError, ValueError) as exc:
            raise InputError(f"{file}: not a valid review file ({str(exc).splitlines()[0]})") from None
    return reviews


def merge(reviews: Iterable[Review]) -> Review:
    """One review from many by majority: remove needs more than half; the most voted name wins a rename."""
    reviews = list(reviews)
    if len(reviews) <= 1:
        return reviews[0] if reviews else Review()
    merged = Review(reviewer="+".join(r.reviewer or "?" for r in reviews))
    for node_id in {node_id for r in reviews for node_id in r.decisions}:
        votes = [r.decisions.get(node_id, Decision()) for r in reviews]
        removes = sum(v.action == "remove" for v in votes)
        if removes * 2 > len(votes):
            merged.decisions[node_id] = Decision(action="remove", reviewer=merged.reviewer)
            continue
        names = Counter(v.new_name if v.action == "rename" else None for v in votes if v.action != "remove")
        winner, _ = max(names.items(), key=lambda kv: (kv[1], kv[0] is None))  # ties keep the name
        if winner is not None:
            merged.decisions[node_id] = Decision(action="rename", new_name=winner, reviewer=merged.reviewer)
    proposals = Counter((a.parent_id, a.name.casefold()) for r in reviews for a in _unique(r.additions))
    firsts = {(a.parent_id, a.name.casefold()): a for r in reviews for a in r.additions}
    merged.additions = [firsts[key] for key, n in proposals.items() if n * 2 > len(reviews)]
    return merged


def _unique(additions: list[Addition]) -> list[Addition]:
    return list({(a.parent_id, a.name.casefold()): a for a in additions}.values())


def apply_review(nodes: Iterable[TaxonomyNode], review: Review | None) -> list[TaxonomyNode]:
    """The kept taxonomy: removed subtrees gone, renames and additions applied, paths and ids rebuilt."""
    review = review or Review()
    nodes = list(nodes)
    children: dict[str | None, list[TaxonomyNode]] = {}
    for node in nodes:
        children.setdefault(node.parent_id, []).append(node)
    added: dict[str, list[Addition]] = {}
    for addition in review.additions:
        added.setdefault(addition.parent_id, []).append(addition)
    kept: list[TaxonomyNode] = []

    def visit(old: TaxonomyNode, new_parent: TaxonomyNode | None) -> None:
        decision = review.decisions.get(old.id, Decision())
        if decision.action == "remove":
            return  # cascade: the subtree is never visited
        name = decision.new_name.strip() if decision.action == "rename" and decision.new_name else old.name
        node = old.model_copy(
            update={
                "name": name,
                "id": "",
                "parent_id": new_parent.id if new_parent else None,
                "path": [*(new_parent.path if new_parent else []), name],
            }
        )
        node = TaxonomyNode.model_validate(node.model_dump())  # recompute the id from the new path
        kept.append(node)
        for child in children.get(old.id, []):
            visit(child, node)
        level = child_level(old.level)
        for addition in added.get(old.id, []) if level else []:
            kept.append(
                TaxonomyNode(
                    name=addition.name,
                    level=level,
                    parent_id=node.id,
                    path=[*node.path, addition.name],
                    source="user",
                )
            )

    for root in children.get(None, []):
        visit(root, None)
    return list({n.id: n for n in kept}.values())


def disciplines(nodes: Iterable[TaxonomyNode]) -> list[TaxonomyNode]:
    """The leaves later stages expand."""
    return [n for n in nodes if n.level == "discipline"]


def repeated_disciplines(nodes: Iterable[TaxonomyNode]) -> dict[str, list[str]]:
    """Discipline names (case-insensitive) found under more than one parent, with every path they sit at.

    A generated taxonomy can list "Statistics" under Mathematics and under Social Sciences; both would be
    expanded into near-identical subjects, so the notebook and the manifest flag them for the reviewer."""
    paths: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for node in disciplines(nodes):
        key = node.name.casefold()
        names.setdefault(key, node.name)
        paths.setdefault(key, []).append(" > ".join(node.path))
    return {names[key]: found for key, found in paths.items() if len(found) > 1}
