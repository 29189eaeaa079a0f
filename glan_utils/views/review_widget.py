"""An ipywidgets tree for reviewing the taxonomy in a notebook, sized for the paper's tree and beyond.

Only the binding lives here: decisions are a `review.Review`, votes and versions come from `stages.review`,
suggestions and duplicates from `stages.grow`, the rows from `views.review_tree`. Rows are built lazily, only
when a node is first shown (its parent expanded, or a filter match), and at most `MAX_ROWS` are on screen, so a
1,000-node tree opens as fast as a 10-node one. Every control carries a stable CSS class (`glan-save`,
`glan-conflict`, `glan-accept`, ...) for browser tests.
"""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path

import ipywidgets as w
import pandas as pd

from glan_utils.core.aio import run
from glan_utils.core.errors import GlanError
from glan_utils.core.records import LEVELS, TaxonomyNode
from glan_utils.settings import Settings
from glan_utils.stages.grow import DUPLICATE_THRESHOLD, DuplicatePair, cross_branch_duplicates, propose_children
from glan_utils.stages.review import (
    AdditionVotes,
    NodeVotes,
    Review,
    Version,
    addition_votes,
    apply_review,
    diff_reviews,
    disciplines,
    known_versions,
    load_reviews,
    merge,
    record_in_manifest,
    reviews_dir,
    save_version,
    slug,
    tally,
)
from glan_utils.stages.selection import review_path
from glan_utils.views.review_tree import NodeRow, Tree, button, with_class

MAX_ROWS = 200  # rows on screen at once (200 render in a few seconds on 2 busy cores); a filter narrows the rest
VOTE_ROWS = 60  # nodes listed in the votes list (conflicts first)


class ReviewWidget:
    """The review form: reviewer, tree tools (filter, expand per level), the tree, the other reviewers' votes
    with conflicts first, duplicates, the merged result that later stages will use, versions, and Save.

    `settings` (optional) enables "propose more": suggestions come through the taxonomy stage's client, cache and
    ledger. Other reviewers' saved files in the run's `reviews/` folder are loaded and merged with this one.
    """

    def __init__(
        self, nodes: list[TaxonomyNode], run_dir: str | Path, reviewer: str = "", settings: Settings | None = None
    ) -> None:
        self.tree, self.run_dir, self.settings = Tree(list(nodes)), Path(run_dir), settings
        self.nodes = self.tree.order
        self.saved = _saved(self.run_dir)
        self.review = self._saved_review(reviewer) or Review(reviewer=reviewer)
        self.rows: dict[str, NodeRow] = {}
        self.expanded: set[str] = set()
        self.votes: dict[str, NodeVotes] = {}
        self._vote_rows: dict[tuple, w.HBox] = {}
        self._kept_ids = {n.id for n in self.nodes}
        self._asked: Counter[str] = Counter()  # "propose more" clicks per node: each asks for a new sample
        self._build_controls(reviewer)
        self.refresh()

    # ----- layout -----

    def _build_controls(self, reviewer: str) -> None:
        self.reviewer = with_class(
            w.Text(value=reviewer, description="Reviewer", placeholder="your name"), "glan-reviewer"
        )
        self.reviewer.observe(lambda _: self._switch_reviewer(), names="value")
        self.filter = with_class(
            w.Text(placeholder="filter by name or description", continuous_update=False), "glan-filter"
        )
        self.filter.observe(lambda _: self.refresh(), names="value")
        level_buttons = [
            button(f"expand to {level}s", f"glan-expand-{level}", lambda level=level: self.expand_to(level))
            for level in LEVELS[1:]
        ]
        collapse = button("collapse all", "glan-collapse-all", lambda: self.expand_to(LEVELS[0]))
        self.shown = with_class(w.HTML(), "glan-shown")
        self.tree_box = with_class(w.VBox(), "glan-tree")
        self.conflicts = with_class(w.VBox(), "glan-conflicts")
        self.duplicates = with_class(w.VBox(), "glan-duplicates")
        find = button("find duplicates", "glan-find-duplicates", self.find_duplicates)
        self.threshold = with_class(
            w.BoundedFloatText(value=DUPLICATE_THRESHOLD, min=0.5, max=1.0, step=0.01, description="cosine ≥"),
            "glan-duplicate-threshold",
        )
        self.merged = with_class(w.HTML(), "glan-merged")
        self.save_button = with_class(w.Button(description="Save", button_style="success"), "glan-save")
        self.save_button.on_click(lambda _: self.save())
        self.status = with_class(w.Label(value=""), "glan-status")
        self.diff_a, self.diff_b = (with_class(w.Dropdown(description=d), f"glan-diff-{d}") for d in ("from", "to"))
        diff = button("diff", "glan-diff", self.show_diff)
        self.diff_out = with_class(w.HTML(), "glan-diff-out")
        self._fill_versions()
        header = (
            f"<b>Review of run {html.escape(self.run_dir.name)}</b> <small>({html.escape(str(self.run_dir))})</small>"
        )
        self.widget = w.VBox(
            [
                with_class(w.HTML(header), "glan-review-run"),
                self.reviewer,
                w.HBox([self.filter, *level_buttons, collapse]),
                self.shown,
                self.tree_box,
                w.HTML("<b>Votes</b> (conflicts first: your vote decides a tie)"),
                self.conflicts,
                w.HBox([find, self.threshold, w.HTML("same or near-same discipline under two parents")]),
                self.duplicates,
                self.merged,
                w.HBox([self.save_button, self.status]),
                w.HBox([self.diff_a, self.diff_b, diff]),
                self.diff_out,
            ]
        )
        self.widget.add_class("glan-review")

    def _saved_review(self, reviewer: str) -> Review | None:
        """This reviewer's latest saved version, to continue from it."""
        return next((r for r in self.saved if reviewer.strip() and slug(r.reviewer) == slug(reviewer)), None)

    def _switch_reviewer(self) -> None:
        """A returning reviewer who has not decided anything yet here continues from their saved version."""
        saved = self._saved_review(self.reviewer.value)
        if saved is not None and not self.review.decisions and not self.review.additions:
            self.review = saved.model_copy(deep=True)
            for row in self.rows.values():
                row.load(self.review)
        self.refresh()

    # ----- the tree -----

    def toggle(self, node_id: str) -> None:
        """Expand or collapse one node."""
        self.expanded ^= {node_id}
        self.refresh()

    def expand_to(self, level: str) -> None:
        """Show every node down to `level` (fields: everything collapsed)."""
        depth = LEVELS.index(level)
        self.expanded = {n.id for n in self.nodes if LEVELS.index(n.level) < depth}
        self.refresh()

    def visible(self) -> list[TaxonomyNode]:
        """Nodes on screen in tree order: filter matches with their ancestors, else the expanded branches."""
        needle = self.filter.value.strip().casefold()
        if needle:
            hits = [n.id for n in self.nodes if needle in n.name.casefold() or needle in n.description.casefold()]
            wanted = set(hits).union(*(self.tree.ancestors(h) for h in hits))
            return [n for n in self.nodes if n.id in wanted]
        return [n for n in self.nodes if all(a in self.expanded for a in self.tree.ancestors(n.id))]

    def row(self, name: str) -> NodeRow:
        """The row of the node called `name` (first in tree order), built if it was not shown yet."""
        node = next(n for n in self.nodes if n.name == name)
        return self._row(node)

    def _row(self, node: TaxonomyNode) -> NodeRow:
        if node.id not in self.rows:
            self.rows[node.id] = NodeRow(node, self)
            self._label(self.rows[node.id])
        return self.rows[node.id]

    # ----- refreshing what depends on the decisions -----

    def refresh(self) -> None:
        """Recompute votes, counts and the merged result; rebuild the visible rows list."""
        self.review.reviewer = self.reviewer.value.strip()
        others = [r for r in self.saved if slug(r.reviewer) != slug(self.review.reviewer or "anonymous")]
        reviews = [*others, self.review]
        self.votes = {v.node.id: v for v in tally(self.nodes, others)}  # conflicts among the saved reviews
        merged = merge(reviews)
        self._kept_ids = {n.id for n in apply_review(self.nodes, _keep_ids(merged))}
        shown = self.visible()
        rows = [self._row(n) for n in shown[:MAX_ROWS]]
        for row in self.rows.values():  # hidden rows too, so they are right when shown again
            self._label(row)
        self.tree_box.children = [r.box for r in rows]
        more = f" (first {MAX_ROWS}: filter to narrow)" if len(shown) > MAX_ROWS else ""
        self.shown.value = f"{len(shown)} of {len(self.nodes)} nodes shown{more}"
        self._show_conflicts(others)
        self._show_merged(merged, reviews)

    def _label(self, row: NodeRow) -> None:
        """Name (struck through when the merged result removes it), counts below it, description and votes."""
        node, below, kept_ids = row.node, self.tree.descendants(row.node.id), self._kept_ids
        if row.toggle is not None:
            row.toggle.description = "▾" if node.id in self.expanded or self.filter.value.strip() else "▸"
        removed = sum(d.id not in kept_ids for d in below)
        children = len(self.tree.children.get(node.id, []))
        counts = f"{children} children · {len(below) - removed} kept · {removed} removed"
        gone = node.id not in kept_ids
        text = f"<s>{html.escape(node.name)}</s>" if gone else f"<b>{html.escape(node.name)}</b>"
        parts = [text, f"<small>({counts})</small>" if below else ""]
        if node.description:
            parts.append(f"<small style='color:#666'>{html.escape(node.description[:80])}</small>")
        if node.id in self.votes and self.votes[node.id].contested:
            parts.append(f"<small class='glan-votes'>{html.escape(_votes_text(self.votes[node.id]))}</small>")
        title = html.escape(node.description or node.name, quote=True)
        row.label.value = f'<span title="{title}">{" ".join(p for p in parts if p)}</span>'
        locked = any(a not in kept_ids for a in self.tree.ancestors(node.id))
        row.remove.disabled = row.rename.disabled = locked  # removal cascades: nothing to decide below it

    def _show_conflicts(self, others: list[Review]) -> None:
        """The nodes other reviewers changed, conflicts first (tally's order); rows are reused, only the text
        (which shows this reviewer's vote) is refreshed."""
        contested = [v for v in self.votes.values() if v.contested]
        rows = [self._vote_row(v) for v in contested[:VOTE_ROWS]]
        rows += [self._addition_row(v) for v in addition_votes(others)]
        if len(contested) > VOTE_ROWS:
            rows.append(w.HTML(f"… {len(contested) - VOTE_ROWS} more nodes changed by other reviewers"))
        self.conflicts.children = rows or [
            w.HTML("every node kept by all reviewers" if others else "no other reviewer's votes yet")
        ]

    def _vote_row(self, votes: NodeVotes) -> w.Widget:
        key = (votes.node.id, tuple(votes.votes.items()))
        if key not in self._vote_rows:
            self._vote_rows[key] = self._new_vote_row(votes)
        box = self._vote_rows[key]
        mine = self.review.decisions.get(votes.node.id)
        box.children[0].value = _vote_text(votes, mine.label() if mine else "keep")
        return box

    def _new_vote_row(self, votes: NodeVotes) -> w.HBox:
        node = votes.node
        choices = {"keep": ("keep", None), "remove": ("remove", None)}
        for label in votes.votes.values():
            if label.startswith("rename: "):
                choices[label] = ("rename", label.removeprefix("rename: "))
        buttons = [
            button(
                label if action != "rename" else f"name it {value}",
                f"glan-resolve-{action}",
                lambda action=action, value=value: self.vote(node.id, action, value),
            )
            for label, (action, value) in choices.items()
        ]
        box = w.HBox([w.HTML(), *buttons])
        for css in ("glan-vote", f"glan-vote-{slug(node.name)}", "glan-conflict" if votes.conflict else "glan-agreed"):
            box.add_class(css)
        return box

    def _addition_row(self, votes: AdditionVotes) -> w.Widget:
        """A node another reviewer added: who proposed it, and a button to support it (it needs a majority)."""
        addition, parent = votes.addition, self.tree.by_id.get(votes.addition.parent_id)
        where = html.escape(" / ".join(parent.path) if parent else addition.parent_id)
        mine = addition.key in {a.key for a in self.review.additions}
        who = html.escape(", ".join([*votes.supporters, *(["you"] if mine else [])]))
        text = f"<b>{html.escape(addition.name)}</b> added under {where} by {who}"
        support = button("add it too", "glan-second", lambda: self._second(addition.parent_id, addition.name))
        box = w.HBox([w.HTML(text), *([] if mine else [support])])
        box.add_class("glan-addition-vote")
        return box

    def _second(self, parent_id: str, name: str) -> None:
        source = next(a for r in self.saved for a in r.additions if a.key == (parent_id, name.casefold()))
        self.review.add(parent_id, name, source.description)
        self.refresh()

    def _show_merged(self, merged: Review, reviews: list[Review]) -> None:
        kept = disciplines(apply_review(self.nodes, merged))
        total = len(disciplines(self.nodes))
        changes = diff_reviews(Review(), merged, self.nodes)
        listed = "".join(f"<li>{html.escape(c)}</li>" for c in changes[:40])
        extra = f"<li>… {len(changes) - 40} more</li>" if len(changes) > 40 else ""
        who = ", ".join(r.reviewer or "you" for r in reviews)
        pending = [
            f"<li>{html.escape(v.addition.name)} ({len(v.supporters)} of {v.reviewers} reviewers)</li>"
            for v in addition_votes(reviews)
            if not v.accepted
        ]
        waiting = f"Added but short of a majority: <ul class='glan-pending'>{''.join(pending)}</ul>" if pending else ""
        self.merged.value = (
            f"<b>Merged result</b> of {html.escape(who)} (what later stages use once saved): "
            f"<span class='glan-kept-count'>{len(kept)}</span> disciplines after review ({total} before)"
            f"<ul>{listed}{extra}</ul>{waiting}"
        )

    # ----- actions -----

    def vote(self, node_id: str, action: str, new_name: str | None = None, new_parent_id: str | None = None) -> None:
        """Cast this reviewer's vote on a node (from the votes list or a duplicate's "keep one"). A rename or a
        move (`new_parent_id`) keeps the node's identity and costs no call; "regenerate" (with or without a new
        name) gives it and its subtree new ids, so the next run generates them again."""
        self.review.decide(node_id, action, new_name, new_parent_id)  # type: ignore[arg-type]
        self._row(self.tree.by_id[node_id]).load(self.review)
        self.refresh()

    def propose(self, node_id: str) -> None:
        """Ask the model for more children of a node and list them under it to accept or reject."""
        node = self.tree.by_id[node_id]
        row = self._row(node)
        siblings = [c.name for c in self.tree.children.get(node_id, [])] + [
            a.name for a in self.review.additions if a.parent_id == node_id
        ]
        self._asked[node_id] += 1
        try:
            proposals = run(propose_children(self.settings, node, siblings, attempt=self._asked[node_id]))
        except GlanError as exc:  # no endpoint, bad settings: one line, the widget stays usable
            self.status.value = f"cannot propose children of {node.name}: {exc}"
            return
        self.status.value = proposals.summary()
        row.suggestions.children = [self._suggestion(row, s) for s in proposals.suggestions]

    def _suggestion(self, row: NodeRow, node: TaxonomyNode) -> w.Widget:
        box = w.HBox()

        def decide(accept: bool) -> None:
            if accept:
                self.review.add(row.node.id, node.name, node.description)
            row.suggestions.children = tuple(c for c in row.suggestions.children if c is not box)
            self.refresh()

        text = f"suggested: <b>{html.escape(node.name)}</b> <small>{html.escape(node.description[:80])}</small>"
        box.children = [
            w.HTML(text),
            button("accept", "glan-accept", lambda: decide(True)),
            button("reject", "glan-reject", lambda: decide(False)),
        ]
        box.add_class("glan-suggestion")
        box.add_class(f"glan-suggestion-{slug(node.name)}")
        return box

    def find_duplicates(self) -> list[DuplicatePair]:
        """Flag the same discipline under two parents, each with a one-click "keep one"."""
        self.status.value = "comparing disciplines (the first use loads the embedding model) …"
        pairs = cross_branch_duplicates(self.nodes, self.threshold.value)
        self.duplicates.children = [self._duplicate_row(p) for p in pairs[:VOTE_ROWS]] or [w.HTML("no duplicates")]
        self.status.value = f"{len(pairs)} near-duplicate pairs at cosine ≥ {self.threshold.value:.2f}"
        return pairs

    def _duplicate_row(self, pair: DuplicatePair) -> w.Widget:
        a, b = pair.first, pair.second
        text = f"{html.escape(' / '.join(a.path))} ≈ {html.escape(' / '.join(b.path))} ({pair.similarity:.2f})"
        box = w.HBox(
            [
                w.HTML(text),
                button(f"keep {a.path[-2]}'s", "glan-keep-first", lambda: self.vote(b.id, "remove")),
                button(f"keep {b.path[-2]}'s", "glan-keep-second", lambda: self.vote(a.id, "remove")),
            ]
        )
        box.add_class("glan-duplicate")
        return box

    def save(self) -> Path | None:
        """Save this reviewer's decisions as their next version and say where; without a name, say so and save
        nothing (an anonymous save and a named one would count one person twice)."""
        if not self.reviewer.value.strip():
            self.status.value = "type your name in Reviewer first: each reviewer's save is one vote"
            return None
        self.review.reviewer = self.reviewer.value.strip()
        version = save_version(self.run_dir, self.review, self.nodes)
        path = reviews_dir(self.run_dir) / f"{slug(version.reviewer)}.json"
        source = review_path(self.settings) if self.settings is not None else reviews_dir(self.run_dir)
        record_in_manifest(self.run_dir, source)  # the versions later stages now apply
        self.saved = _saved(self.run_dir)
        self.status.value = f"saved to {path} (version {version.version}, {len(version.changes)} changes)"
        self._fill_versions()
        return path

    def _fill_versions(self) -> None:
        """The diff menus: every version of every reviewer, with when it was saved."""
        options = [(f"{v.reviewer} v{v.version} ({v.at:%Y-%m-%d %H:%M})", key) for key, v in self._known().items()]
        for dropdown in (self.diff_a, self.diff_b):
            dropdown.options = options
        if len(options) > 1:
            self.diff_a.value, self.diff_b.value = options[-2][1], options[-1][1]

    def _known(self) -> dict[tuple[str, int], Version]:
        return {(v.reviewer, v.version): v for v in known_versions(self.run_dir)}

    def show_diff(self) -> list[str]:
        """What changed between the two chosen versions (of one reviewer, or of two reviewers)."""
        if self.diff_a.value is None or self.diff_b.value is None:
            return []
        known = self._known()
        lines = diff_reviews(known[self.diff_a.value].review, known[self.diff_b.value].review, self.nodes)
        items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
        self.diff_out.value = f"<ul>{items}</ul>" if lines else "no differences"
        return lines

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def _saved(run_dir: Path) -> list[Review]:
    return load_reviews(reviews_dir(run_dir)) if reviews_dir(run_dir).is_dir() else []


def _keep_ids(review: Review) -> Review:
    """The review's removals only: which original ids survive (renames would change the ids)."""
    return Review(decisions={k: d for k, d in review.decisions.items() if d.action == "remove"})


def _votes_text(votes: NodeVotes) -> str:
    return ", ".join(f"{who}: {label}" for who, label in votes.votes.items())


def _vote_text(votes: NodeVotes, mine: str) -> str:
    """One line of the votes list: path, everyone's vote, the outcome, this reviewer's vote, the conflict."""
    where = html.escape(" / ".join(votes.node.path))
    text = (
        f"<b>{where}</b>: {html.escape(_votes_text(votes))} → <b>{html.escape(votes.outcome)}</b>"
        f" · your vote: <span class='glan-my-vote'>{html.escape(mine)}</span>"
    )
    return f"⚠ {text} <i>({html.escape(votes.conflict)})</i>" if votes.conflict else text


def votes_frame(nodes: list[TaxonomyNode], source: Path | None) -> pd.DataFrame:
    """One row per node some reviewer changed in the reviews at `source` (a file or folder; None: no review):
    each reviewer's vote, the majority outcome and the conflict, conflicts first. For notebooks and batch runs
    that show the votes without the widget."""
    reviews = load_reviews(source) if source else []
    rows = [
        {"path": " / ".join(v.node.path), **v.votes, "outcome": v.outcome, "conflict": v.conflict}
        for v in tally(nodes, reviews)
        if v.contested
    ]
    return pd.DataFrame(rows, columns=["path", *(r.reviewer or "?" for r in reviews), "outcome", "conflict"])


def history_frame(run_dir: str | Path) -> pd.DataFrame:
    """Every saved review version: who, which version, when, and what changed against their previous one."""
    rows = [
        {"reviewer": v.reviewer, "version": v.version, "saved_at": v.at, "changes": "; ".join(v.changes)}
        for v in known_versions(run_dir)
    ]
    return pd.DataFrame(rows, columns=["reviewer", "version", "saved_at", "changes"])
