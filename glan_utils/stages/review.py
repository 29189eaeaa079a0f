"""Human review of the taxonomy (paper §2.1): keep/remove/rename/add per node, majority merge, cascade, versions.

A `Review` is one reviewer's decisions, saved as JSON so it can be shared; several reviews merge by majority
(a reviewer who left a node untouched votes to keep it; ties keep). Applying a review removes each removed
node with its whole subtree, renames and moves nodes and adds new nodes (under stored or added ones); the next
stage expands only the kept disciplines.

A node's id is its identity, created once (from its path when it was made, or for an addition from its parent
and name, recorded in the review as `Addition.node_id`); its name and path are display data. A rename or a move
keeps the id, so it costs no calls: everything generated under the node stays and shows the new name. A rename
that changes what the node means is `regenerate` (optionally with a new name): the node and its subtree get new
ids, so the next run generates them afresh (the old records stay on disk, outside the plan).

`tally` shows every reviewer's vote per node with the majority outcome, conflicts (remove ties, rename
disagreements) first. Each save is a version: `reviews/<reviewer>.json` holds the latest one (what the merge
reads, so batch reruns need nothing else) and `reviews/history.jsonl` keeps every version, append-only and
keyed by content, with who, when and what changed; `diff_reviews` compares any two.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError, model_validator

from glan_utils.core.errors import InputError
from glan_utils.core.ids import content_hash
from glan_utils.core.jsonl import JsonlWriter, iter_jsonl
from glan_utils.core.paths import REVIEWS
from glan_utils.core.records import NodeLevel, TaxonomyNode, child_level, utc_now
from glan_utils.runs.store import RunStore

Action = Literal["keep", "remove", "rename", "move", "regenerate"]
HISTORY = "history.jsonl"
MANIFEST_ENTRY = "taxonomy_review"


class Decision(BaseModel):
    """One reviewer's verdict on one node."""

    action: Action = "keep"
    new_name: str | None = Field(None, description="rename (and optionally move, regenerate): the new name.")
    new_parent_id: str | None = Field(None, description="move: the id of the new parent (one level up).")
    reviewer: str = ""
    at: datetime = Field(default_factory=utc_now)

    def label(self) -> str:
        """ "keep", "remove", "rename: <name>", "move: under <id>" or "regenerate", as in vote tables and diffs."""
        parts = [f"{self.action}:" if self.new_name or self.new_parent_id else self.action]
        parts += [f"under {self.new_parent_id}"] if self.new_parent_id else []
        parts += [f"as {self.new_name}" if self.new_parent_id else self.new_name] if self.new_name else []
        return " ".join(parts) if self.action != "keep" else "keep"


class Addition(BaseModel):
    """A node a reviewer added under `parent_id` (typed in, or a model suggestion the reviewer accepted)."""

    parent_id: str
    name: str = Field(min_length=1)
    description: str = ""
    node_id: str = Field("", description="The added node's id, made once; empty in older reviews (id from path).")
    reviewer: str = ""
    at: datetime = Field(default_factory=utc_now)

    @property
    def key(self) -> tuple[str, str]:
        return self.parent_id, self.name.casefold()


class Review(BaseModel):
    """Everything one reviewer decided; nodes without a decision are kept. `version` counts this reviewer's
    saves (0: never saved)."""

    reviewer: str = ""
    version: int = 0
    decisions: dict[str, Decision] = Field(default_factory=dict)
    additions: list[Addition] = Field(default_factory=list)
    stable_ids: bool = Field(True, description="False in a review saved before ids survived renames (see below).")

    @model_validator(mode="before")
    @classmethod
    def _older_file(cls, data: Any) -> Any:
        """A saved review without `stable_ids` was made when a rename or a move gave the nodes below it ids from
        their new path; applying it so again keeps the ids, and the records, of the runs it was used in."""
        if isinstance(data, dict) and "decisions" in data and "stable_ids" not in data:
            return {**data, "stable_ids": False}
        return data

    def decide(
        self, node_id: str, action: Action, new_name: str | None = None, new_parent_id: str | None = None
    ) -> None:
        self.decisions[node_id] = Decision(
            action=action, new_name=new_name, new_parent_id=new_parent_id, reviewer=self.reviewer
        )

    def add(self, parent_id: str, name: str, description: str = "") -> None:
        addition = Addition(
            parent_id=parent_id,
            name=name.strip(),
            description=description,
            node_id=content_hash("TaxonomyNode", "added", parent_id, name.strip().casefold()),
            reviewer=self.reviewer,
        )
        if addition.key not in {a.key for a in self.additions}:
            self.additions.append(addition)

    def content_id(self) -> str:
        """A hash of what the review decides (not who or when), so an unchanged save is not a new version."""
        decided = {k: d.label() for k, d in sorted(self.decisions.items()) if d.action != "keep"}
        return content_hash(decided, sorted(a.key for a in self.additions))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        return path


def slug(name: str) -> str:
    """A file- and CSS-safe form of a name ("Ann Lee" -> "ann-lee")."""
    return re.sub(r"[^a-z0-9]+", "-", name.casefold()).strip("-") or "node"


def reviews_dir(run_dir: str | Path) -> Path:
    """Where a run's saved reviews go; the next stage merges every file found there."""
    return Path(run_dir) / REVIEWS


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


# ----- votes and the majority merge -----


@dataclass(frozen=True)
class Outcome:
    """The majority verdict on one node and, when the vote was not clear, why it needs a human look."""

    decision: Decision | None  # None: kept under its own name
    conflict: str = ""


def outcome(votes: Sequence[Decision]) -> Outcome:
    """Majority of one node's votes: remove needs more than half; the one most voted change (rename, move,
    regenerate) wins; ties keep."""
    removes = sum(v.action == "remove" for v in votes)
    if removes * 2 > len(votes):
        return Outcome(Decision(action="remove"))
    tie = f"tie: {removes} remove vs {len(votes) - removes} keep" if removes and removes * 2 == len(votes) else ""
    changes = {v.label(): v for v in votes if v.action != "remove"}
    counts = Counter(v.label() for v in votes if v.action != "remove")
    top = max(counts.values())
    tied = [label for label, count in counts.items() if count == top]
    winner = changes[tied[0]] if len(tied) == 1 and tied[0] != "keep" else None  # a tie keeps the node as it is
    if len(set(counts) - {"keep"}) > 1 or (len(counts) > 1 and len(tied) > 1):
        shown = " vs ".join(_shown(changes[label]) for label in sorted(counts, key=lambda la: _shown(changes[la])))
        tie = "; ".join(filter(None, [tie, f"rename disagreement: {shown}"]))
    decision = winner and Decision(action=winner.action, new_name=winner.new_name, new_parent_id=winner.new_parent_id)
    return Outcome(decision, tie)


def _shown(vote: Decision) -> str:
    """A vote as a conflict line shows it: a rename by its quoted name."""
    if vote.action == "keep":
        return "keep the name"
    return repr(vote.new_name) if vote.action == "rename" else vote.label()


def merge(reviews: Iterable[Review]) -> Review:
    """One review from many by majority (see `outcome`); an addition needs more than half of the reviewers
    (leaving the tree as it was is a vote against a change, for additions as for renames)."""
    reviews = list(reviews)
    if len(reviews) <= 1:
        return reviews[0] if reviews else Review()
    merged = Review(
        reviewer="+".join(r.reviewer or "?" for r in reviews), stable_ids=all(r.stable_ids for r in reviews)
    )
    for node_id in sorted({node_id for r in reviews for node_id in r.decisions}):
        decision = outcome([r.decisions.get(node_id, Decision()) for r in reviews]).decision
        if decision is not None:
            merged.decisions[node_id] = decision.model_copy(update={"reviewer": merged.reviewer})
    merged.additions = [v.addition for v in addition_votes(reviews) if v.accepted]
    return merged


@dataclass(frozen=True)
class AdditionVotes:
    """Who proposed one new node; like any change it needs more than half of the reviewers."""

    addition: Addition
    supporters: list[str]
    reviewers: int

    @property
    def accepted(self) -> bool:
        return len(self.supporters) * 2 > self.reviewers


def addition_votes(reviews: Sequence[Review]) -> list[AdditionVotes]:
    """Every proposed node (same parent, same name ignoring case) with its supporters, in proposal order."""
    supporters: dict[tuple[str, str], list[str]] = {}
    firsts: dict[tuple[str, str], Addition] = {}
    for review in reviews:
        for addition in review.additions:
            firsts.setdefault(addition.key, addition)
            names, who = supporters.setdefault(addition.key, []), review.reviewer or "?"
            if who not in names:
                names.append(who)
    return [AdditionVotes(firsts[key], names, len(reviews)) for key, names in supporters.items()]


@dataclass(frozen=True)
class NodeVotes:
    """Who voted what on one node, the majority outcome and the conflict, if any."""

    node: TaxonomyNode
    votes: dict[str, str]
    outcome: str
    conflict: str

    @property
    def contested(self) -> bool:
        return any(v != "keep" for v in self.votes.values())


def tally(nodes: Iterable[TaxonomyNode], reviews: Sequence[Review]) -> list[NodeVotes]:
    """Every node's votes by reviewer: conflicts first, then nodes someone changed, then the rest (tree order)."""
    rows = []
    for node in nodes:
        votes = [r.decisions.get(node.id, Decision()) for r in reviews]
        result = outcome(votes) if votes else Outcome(None)
        by_reviewer = {
            r.reviewer or f"reviewer {i + 1}": v.label() for i, (r, v) in enumerate(zip(reviews, votes, strict=True))
        }
        rows.append(
            NodeVotes(node, by_reviewer, result.decision.label() if result.decision else "keep", result.conflict)
        )
    order = {id(row): i for i, row in enumerate(rows)}
    return sorted(rows, key=lambda r: (not r.conflict, not r.contested, order[id(r)]))


# ----- versions and diffs -----


class Version(BaseModel):
    """One saved version of one reviewer's review: who, when, what changed since their previous version."""

    reviewer: str
    version: int
    at: datetime = Field(default_factory=utc_now)
    content_id: str
    changes: list[str] = Field(default_factory=list)
    review: Review


def versions(run_dir: str | Path, reviewer: str | None = None) -> list[Version]:
    """Every saved version in the run (of one reviewer if named), oldest first."""
    rows = (Version.model_validate(row) for row in iter_jsonl(reviews_dir(run_dir) / HISTORY))
    return [v for v in rows if reviewer is None or slug(v.reviewer) == slug(reviewer)]


def known_versions(run_dir: str | Path) -> list[Version]:
    """Every saved version, plus reviewers' files copied into `reviews/` without a history (dated by the file)."""
    found = {(slug(v.reviewer), v.version): v for v in versions(run_dir)}
    folder = reviews_dir(run_dir)
    for file in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        for review in load_reviews(file):
            at = datetime.fromtimestamp(file.stat().st_mtime, tz=UTC)
            version = Version(
                reviewer=review.reviewer or file.stem,
                version=review.version,
                at=at,
                content_id=review.content_id(),
                review=review,
            )
            found.setdefault((slug(version.reviewer), review.version), version)
    return list(found.values())


def save_version(run_dir: str | Path, review: Review, nodes: Iterable[TaxonomyNode] = ()) -> Version:
    """Save `review` as its reviewer's next version (unchanged content: the last version, nothing written); a
    review without a reviewer's name is refused, so one person's edits never count as two reviewers.

    The latest version goes to `reviews/<reviewer>.json` (what merges and batch reruns read) and every version
    is appended to `reviews/history.jsonl` with the changes against the previous one.
    """
    reviewer = review.reviewer.strip()
    if not reviewer:
        raise InputError("a review needs the reviewer's name: one person is one vote in the majority")
    previous = versions(run_dir, reviewer)
    last = previous[-1] if previous else None
    if last is not None and last.content_id == review.content_id():
        return last
    number = (last.version if last else 0) + 1
    saved = review.model_copy(update={"reviewer": reviewer, "version": number}, deep=True)
    for decision in saved.decisions.values():
        decision.reviewer = reviewer
    changes = diff_reviews(last.review if last else Review(), saved, nodes)
    version = Version(reviewer=reviewer, version=number, content_id=saved.content_id(), changes=changes, review=saved)
    saved.save(reviews_dir(run_dir) / f"{slug(reviewer)}.json")
    with JsonlWriter(reviews_dir(run_dir) / HISTORY) as out:
        out.write(version.model_dump(mode="json"))
    review.version = number
    return version


def diff_reviews(before: Review, after: Review, nodes: Iterable[TaxonomyNode] = ()) -> list[str]:
    """What `after` decides differently from `before` (two versions, or two reviewers), one line per node, each
    named by its full path (two nodes may share a name under different parents)."""
    names = {n.id: " / ".join(n.path) for n in nodes}
    lines = []
    for node_id in sorted(set(before.decisions) | set(after.decisions), key=lambda i: names.get(i, i)):
        old, new = (_named(r.decisions.get(node_id, Decision()), names) for r in (before, after))
        if old != new:
            lines.append(f"{names.get(node_id, node_id)}: {old} -> {new}")
    added = {a.key: a for a in after.additions}
    dropped = {a.key: a for a in before.additions}
    for key in sorted(added.keys() - dropped.keys()):
        lines.append(f"{added[key].name}: added under {names.get(key[0], key[0])}")
    for key in sorted(dropped.keys() - added.keys()):
        lines.append(f"{dropped[key].name}: no longer added under {names.get(key[0], key[0])}")
    return lines


def _named(decision: Decision, names: dict[str, str]) -> str:
    """A decision's label with a move's target shown by its name."""
    target = decision.new_parent_id
    return decision.label().replace(target, names.get(target, target)) if target else decision.label()


def record_in_manifest(run_dir: str | Path, source: Path | None) -> dict[str, Any]:
    """Write which review versions this run applies into its manifest (the report shows it); returns the entry."""
    reviews = load_reviews(source) if source else []
    entry = {
        "status": "applied" if reviews else "none (all kept)",
        "source": str(source) if source else None,
        "versions": {r.reviewer or "?": r.version for r in reviews},
        "content_id": merge(reviews).content_id() if reviews else None,
    }
    RunStore(run_dir).update_manifest(MANIFEST_ENTRY, **entry)
    return entry


# ----- applying a review -----


def apply_review(nodes: Iterable[TaxonomyNode], review: Review | None) -> list[TaxonomyNode]:
    """The kept taxonomy: removed subtrees gone; renamed, moved and added nodes in place; ids kept (see above).

    A move goes under a node (stored or added) one level up (any other target leaves the node where it was);
    additions may sit under added nodes. Decisions and additions made against the ids older versions gave renamed
    nodes (a hash of the new path) still find their node."""
    review = review or Review()
    nodes = list(nodes)
    levels = _levels(nodes, review.additions)
    children: dict[str | None, list[TaxonomyNode]] = {}
    for node in nodes:
        children.setdefault(_new_parent(node, review.decisions.get(node.id), levels), []).append(node)
    added: dict[str, list[Addition]] = {}
    for addition in review.additions:
        added.setdefault(addition.parent_id, []).append(addition)
    kept: list[TaxonomyNode] = []

    def visit(old: TaxonomyNode, parent: TaxonomyNode | None, fresh: str | None) -> None:
        path = [*(parent.path if parent else []), old.name]
        legacy = TaxonomyNode(name=old.name, level=old.level, path=path).id  # the id a rename used to give
        decision = review.decisions.get(old.id) or review.decisions.get(legacy) or Decision()
        if decision.action == "remove":
            return  # cascade: the subtree is never visited
        name = (decision.new_name or "").strip() or old.name
        if decision.action == "regenerate" or fresh:
            fresh = content_hash("TaxonomyNode", "regenerated", fresh, old.id)
        path[-1] = name
        node_id = fresh or old.id
        if not review.stable_ids and path != old.path:  # an older review: ids follow the new path, as they did
            node_id = TaxonomyNode(name=name, level=old.level, path=path).id
        update = {"name": name, "parent_id": parent.id if parent else None, "path": path, "id": node_id}
        node = old.model_copy(update=update)
        kept.append(node)
        for child in children.get(old.id, []):
            visit(child, node, fresh and node.id)
        level = child_level(old.level)
        for addition in [*added.get(old.id, []), *added.get(legacy, [])] if level else []:
            new = TaxonomyNode(
                id=addition.node_id or TaxonomyNode(name=addition.name, level=level, path=[*path, addition.name]).id,
                name=addition.name,
                level=level,
                path=[*path, addition.name],
                description=addition.description,
                source="user",
            )
            visit(new, node, fresh and node.id)

    for root in children.get(None, []):
        visit(root, None, None)
    return list({n.id: n for n in kept}.values())


def _levels(nodes: list[TaxonomyNode], additions: list[Addition]) -> dict[str, NodeLevel]:
    """The level of every stored node and of every added one (an addition is one level below its parent)."""
    levels: dict[str, NodeLevel] = {n.id: n.level for n in nodes}
    pending = [a for a in additions if a.node_id]
    while placed := [a for a in pending if a.parent_id in levels]:
        for addition in placed:
            if level := child_level(levels[addition.parent_id]):
                levels[addition.node_id] = level
        pending = [a for a in pending if a not in placed]
    return levels


def _new_parent(node: TaxonomyNode, decision: Decision | None, levels: dict[str, NodeLevel]) -> str | None:
    """Where a node sits after review: its move target if that is a node (stored or added) one level up, else its
    parent."""
    target = decision.new_parent_id if decision and decision.action == "move" else None
    return target if target in levels and child_level(levels[target]) == node.level else node.parent_id


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
