"""An ipywidgets tree for reviewing the taxonomy in a notebook: remove, rename, add a child, save.

Only the binding lives here; the decisions are a `review.Review`. Every control carries stable CSS classes so
a browser test can find a node's row by name (`glan-node-<slug>`) and press its `remove` toggle or the `Save`
button.
"""

from __future__ import annotations

import re
from pathlib import Path

import ipywidgets as w

from glan_utils.core.records import TaxonomyNode, child_level
from glan_utils.stages.review import Review, reviews_dir


def slug(name: str) -> str:
    """A CSS-safe class suffix for a node name ("Computer Science" -> "computer-science")."""
    return re.sub(r"[^a-z0-9]+", "-", name.casefold()).strip("-") or "node"


class NodeRow:
    """The controls of one node: remove toggle, rename box, and (above disciplines) an add-child box."""

    def __init__(self, node: TaxonomyNode, review: Review) -> None:
        self.node, self.review = node, review
        depth = len(node.path) - 1
        self.label = w.Label(value=node.name, layout=w.Layout(margin=f"0 0 0 {24 * depth}px", width="320px"))
        self.remove = w.ToggleButton(value=False, description="remove", tooltip=f"remove {node.name} and its subtree")
        self.rename = w.Text(placeholder="rename", layout=w.Layout(width="200px"))
        self.remove.add_class("glan-remove")
        self.rename.add_class("glan-rename")
        controls: list[w.Widget] = [self.label, self.remove, self.rename]
        self.child_name = self.add = None
        if child_level(node.level):
            self.child_name = w.Text(placeholder=f"new {child_level(node.level)}", layout=w.Layout(width="180px"))
            self.add = w.Button(description="add child")
            self.child_name.add_class("glan-child-name")
            self.add.add_class("glan-add")
            self.add.on_click(self._on_add)
            controls += [self.child_name, self.add]
        self.box = w.HBox(controls)
        for css in ("glan-row", f"glan-node-{slug(node.name)}", f"glan-id-{node.id}", f"glan-{node.level}"):
            self.box.add_class(css)
        self.remove.observe(self._on_change, names="value")
        self.rename.observe(self._on_change, names="value")

    def _on_change(self, _: object = None) -> None:
        if self.remove.value:
            self.review.decide(self.node.id, "remove")
        elif self.rename.value.strip():
            self.review.decide(self.node.id, "rename", self.rename.value.strip())
        else:
            self.review.decide(self.node.id, "keep")

    def _on_add(self, _: object) -> None:
        if self.child_name is not None and self.child_name.value.strip():
            self.review.add(self.node.id, self.child_name.value)
            self.child_name.value = ""


class ReviewWidget:
    """The review form: reviewer name, one row per node (a tree), Save writing `reviews/<name>.json`."""

    def __init__(self, nodes: list[TaxonomyNode], run_dir: str | Path, reviewer: str = "") -> None:
        self.review = Review(reviewer=reviewer)
        self.run_dir = Path(run_dir)
        self.rows = [NodeRow(node, self.review) for node in _tree_order(nodes)]
        self.reviewer = w.Text(value=reviewer, description="Reviewer", placeholder="your name")
        self.reviewer.add_class("glan-reviewer")
        self.save_button = w.Button(description="Save", button_style="success")
        self.save_button.add_class("glan-save")
        self.save_button.on_click(lambda _: self.save())
        self.status = w.Label(value="")
        self.status.add_class("glan-status")
        for row in self.rows:
            row.remove.observe(lambda _: self._grey_out(), names="value")
        self.widget = w.VBox([self.reviewer, *(r.box for r in self.rows), w.HBox([self.save_button, self.status])])
        self.widget.add_class("glan-review")

    def row(self, name: str) -> NodeRow:
        """The row of the node called `name` (first in tree order)."""
        return next(r for r in self.rows if r.node.name == name)

    def save(self) -> Path:
        """Write this reviewer's decisions to the run's reviews folder and say where."""
        self.review.reviewer = self.reviewer.value.strip() or "anonymous"
        for decision in self.review.decisions.values():
            decision.reviewer = self.review.reviewer
        path = self.review.save(reviews_dir(self.run_dir) / f"{slug(self.review.reviewer)}.json")
        self.status.value = f"saved to {path}"
        return path

    def _grey_out(self) -> None:
        """Disable the rows under a removed node, since removal cascades."""
        removed = {r.node.id for r in self.rows if r.remove.value}
        by_id = {r.node.id: r.node for r in self.rows}
        for row in self.rows:
            parent, hidden = row.node.parent_id, False
            while parent and not hidden:
                hidden, parent = parent in removed, by_id[parent].parent_id if parent in by_id else None
            row.remove.disabled = row.rename.disabled = hidden

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def _tree_order(nodes: list[TaxonomyNode]) -> list[TaxonomyNode]:
    """Depth-first, each parent followed by its children."""
    children: dict[str | None, list[TaxonomyNode]] = {}
    for node in nodes:
        children.setdefault(node.parent_id, []).append(node)
    ordered: list[TaxonomyNode] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        node = stack.pop()
        ordered.append(node)
        stack.extend(reversed(children.get(node.id, [])))
    return ordered
