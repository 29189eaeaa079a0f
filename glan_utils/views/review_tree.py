"""The rows of the review tree: the taxonomy's shape, and one node's controls (built only when first shown).

`NodeRow` knows nothing of votes or files: it reports decisions to its owner (the `ReviewWidget`), which
recomputes counts and the merged result. Every control carries stable CSS classes (`glan-node-<slug>`,
`glan-remove`, `glan-toggle`, ...) so browser tests find them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache
from typing import Protocol

import ipywidgets as w
from ipywidgets.widgets.widget_bool import ToggleButtonStyle
from ipywidgets.widgets.widget_string import HTMLStyle, TextStyle

from glan_utils.core.records import TaxonomyNode, child_level
from glan_utils.settings import Settings
from glan_utils.stages.review import Review, slug

INDENT_PX = 22  # per level of depth
TOGGLE_PX = 32
LABEL_PX = 420  # the label column, indentation included, so every row's controls line up


class RowOwner(Protocol):
    """What a row needs from the widget it sits in."""

    review: Review
    settings: Settings | None

    def toggle(self, node_id: str) -> None: ...

    def propose(self, node_id: str) -> None: ...

    def refresh(self) -> None: ...


class Tree:
    """The taxonomy's shape: children per node, tree order, ancestors; built once per widget."""

    def __init__(self, nodes: list[TaxonomyNode]) -> None:
        self.by_id = {n.id: n for n in nodes}
        self.children: dict[str | None, list[TaxonomyNode]] = {}
        for node in nodes:
            parent = node.parent_id if node.parent_id in self.by_id else None
            self.children.setdefault(parent, []).append(node)
        self.order = list(self._walk(None))

    def _walk(self, parent: str | None) -> Iterator[TaxonomyNode]:
        for child in self.children.get(parent, []):
            yield child
            yield from self._walk(child.id)

    def ancestors(self, node_id: str) -> list[str]:
        chain, parent = [], self.by_id[node_id].parent_id
        while parent in self.by_id:
            chain.append(parent)
            parent = self.by_id[parent].parent_id
        return chain

    def descendants(self, node_id: str) -> list[TaxonomyNode]:
        return list(self._walk(node_id))


class NodeRow:
    """The controls of one node: expand toggle (above disciplines), label with counts and description, remove
    toggle, rename box; above disciplines also an add-child box and "propose more" (when a model is set)."""

    def __init__(self, node: TaxonomyNode, widget: RowOwner) -> None:
        self.node, self.owner, self._syncing = node, widget, False
        indent = INDENT_PX * (len(node.path) - 1)
        level = child_level(node.level)
        margin = "0" if level else f"0 0 0 {indent + TOGGLE_PX}px"  # above disciplines the toggle is indented
        label_layout = shared(w.Layout, width=f"{LABEL_PX - indent - TOGGLE_PX}px", margin=margin, flex="0 0 auto")
        self.label = with_class(w.HTML(layout=label_layout, style=shared(HTMLStyle)), "glan-label")
        self.remove = w.ToggleButton(
            description="remove",
            tooltip=f"remove {node.name} and its subtree",
            layout=shared(w.Layout, width="80px", flex="0 0 auto"),
            style=shared(ToggleButtonStyle),
        )
        self.rename = w.Text(
            placeholder="rename",
            continuous_update=False,
            layout=shared(w.Layout, width="150px", flex="0 0 auto"),
            style=shared(TextStyle),
        )
        self.remove.add_class("glan-remove")
        self.rename.add_class("glan-rename")
        self.toggle = self.child_name = self.add = self.propose = self.suggestions = None
        if level is None:  # a discipline: most rows are, so they get the fewest widgets
            self.box = w.HBox([self.label, self.remove, self.rename], layout=shared(w.Layout))
        else:
            self.toggle = w.Button(
                description="▸", layout=w.Layout(width=f"{TOGGLE_PX}px", margin=f"0 0 0 {indent}px", flex="0 0 auto")
            )
            self.toggle.add_class("glan-toggle")
            self.toggle.on_click(lambda _: widget.toggle(node.id))
            self.child_name = with_class(
                w.Text(placeholder=f"new {level}", layout=w.Layout(width="140px", flex="0 0 auto")), "glan-child-name"
            )
            self.add = button("add child", "glan-add", self._on_add)
            controls = [self.toggle, self.label, self.remove, self.rename, self.child_name, self.add]
            if widget.settings is not None:
                self.propose = button("propose more", "glan-propose", lambda: widget.propose(node.id))
                self.propose.tooltip = "ask the model for more children"
                controls.append(self.propose)
            self.suggestions = w.VBox(layout=w.Layout(margin=f"0 0 0 {indent + 2 * TOGGLE_PX}px"))
            self.box = w.VBox([w.HBox(controls), self.suggestions])
        for css in ("glan-row", f"glan-node-{slug(node.name)}", f"glan-id-{node.id}", f"glan-{node.level}"):
            self.box.add_class(css)
        self.load(widget.review)
        self.remove.observe(self._on_change, names="value")
        self.rename.observe(self._on_change, names="value")

    def load(self, review: Review) -> None:
        """Show the reviewer's decision on this node (made elsewhere: a saved file, the votes list)."""
        decision = review.decisions.get(self.node.id)
        self._syncing = True
        try:
            self.remove.value = bool(decision and decision.action == "remove")
            self.rename.value = (decision.new_name or "") if decision and decision.action == "rename" else ""
        finally:
            self._syncing = False

    def _on_change(self, _: object = None) -> None:
        if self._syncing:
            return
        if self.remove.value:
            self.owner.review.decide(self.node.id, "remove")
        elif self.rename.value.strip():
            self.owner.review.decide(self.node.id, "rename", self.rename.value.strip())
        else:
            self.owner.review.decide(self.node.id, "keep")
        self.owner.refresh()

    def _on_add(self) -> None:
        if self.child_name is not None and self.child_name.value.strip():
            self.owner.review.add(self.node.id, self.child_name.value)
            self.child_name.value = ""
            self.owner.refresh()


@cache
def _shared(kind: type[w.Widget], settings: tuple[tuple[str, str], ...]) -> w.Widget:
    return kind(**dict(settings))


def shared(kind: type[w.Widget], **settings: str) -> w.Widget:
    """One layout or style model for every row that looks alike: each model is a message to the browser and an
    object there, so sharing them makes a page of rows several times lighter. Never mutate what it returns."""
    return _shared(kind, tuple(sorted(settings.items())))


def with_class(widget: w.Widget, css: str) -> w.Widget:
    """`widget` with a CSS class added, so browser tests can find it."""
    widget.add_class(css)
    return widget


def button(description: str, css: str, action: Callable[[], object]) -> w.Button:
    """A button as wide as its text that calls `action` on click."""
    made = with_class(w.Button(description=description, layout=w.Layout(width="auto", flex="0 0 auto")), css)
    made.on_click(lambda _: action())
    return made
