"""Benchmark of the taxonomy review widget (issue 19): kernel-side time to open, expand, filter and vote.

Trees: the paper's (~160 nodes, `tests/browser/trees.paper_tree`) and a synthetic 1,000-node one (10 fields x 9
sub-fields x 10 disciplines). Each figure is the median of `--repeat` fresh widgets; "rows built" is how many
node rows exist after the step (rows are built lazily, at most `MAX_ROWS` on screen). `--browser` also times the
same steps as a reviewer sees them: JupyterLab in headless Chromium, from the click until the page shows the result.

    .venv/bin/python benchmarks/bench_review.py --repeat 5 --browser --out benchmarks/results/review.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser.trees import paper_tree, synthetic_tree  # noqa: E402

from glan_utils.stages.review import Review, save_version  # noqa: E402
from glan_utils.views.review_widget import ReviewWidget  # noqa: E402


def _steps(nodes: list) -> dict[str, Callable[[ReviewWidget], object]]:
    """What a reviewer does after opening the widget, in order."""
    return {
        "expand to disciplines": lambda widget: widget.expand_to("discipline"),
        "vote (remove a field)": lambda widget: widget.vote(nodes[0].id, "remove"),
        "filter '1'": lambda widget: setattr(widget.filter, "value", "1"),
        "clear filter, collapse all": lambda widget: (setattr(widget.filter, "value", ""), widget.expand_to("field")),
    }


def _note(steps: dict, rows: dict, label: str, started: float, widget: ReviewWidget) -> None:
    steps.setdefault(label, []).append((time.perf_counter() - started) * 1000)
    rows[label] = len(widget.rows)


def measure(nodes: list, repeat: int) -> dict[str, float]:
    """Median milliseconds per step over `repeat` fresh widgets, with two other reviewers' files loaded."""
    steps: dict[str, list[float]] = {}
    rows: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as run_dir:
        for name, offset in (("ann", 0), ("bob", 1)):  # two reviewers removing every 7th node, shifted
            review = Review(reviewer=name)
            for node in nodes[offset::7]:
                review.decide(node.id, "remove")
            save_version(run_dir, review, nodes)
        for _ in range(repeat):
            started = time.perf_counter()
            widget = ReviewWidget(nodes, run_dir, reviewer="cid")
            _note(steps, rows, "open (collapsed)", started, widget)
            for label, step in _steps(nodes).items():
                started = time.perf_counter()
                step(widget)
                _note(steps, rows, label, started, widget)
    return {label: (statistics.median(times), rows[label]) for label, times in steps.items()}


BROWSER_CELL = """import sys
sys.path.insert(0, {tests!r})
from browser.trees import {tree}
from glan_utils.views.review_widget import ReviewWidget
ReviewWidget({tree}(), {run_dir!r}, reviewer="cid")
"""


def _seconds(page: object, action: Callable[[], object], selector: str, count: int) -> float:
    """Seconds from `action` until `selector` matches `count` elements on the page."""
    started = time.perf_counter()
    action()
    page.wait_for_function(
        "([sel, n]) => document.querySelectorAll(sel).length === n", arg=[selector, count], timeout=120_000
    )
    return time.perf_counter() - started


def measure_browser(tree: str, nodes: list) -> dict[str, float]:
    """The widget in JupyterLab + Chromium: seconds per step as the page shows it."""
    import nbformat
    from browser.chromium import browser_page
    from browser.jupyter import jupyter_lab

    from glan_utils.views.review_widget import MAX_ROWS

    fields = sum(n.level == "field" for n in nodes)
    rows = ".glan-tree .glan-row"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lab"
        root.mkdir()
        cell = BROWSER_CELL.format(tests=str(ROOT / "tests"), tree=tree, run_dir=str(Path(tmp) / "run"))
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, root / "review.ipynb")
        with jupyter_lab(root, {"PYTHONPATH": str(ROOT)}) as lab, browser_page() as page:
            page.goto(lab.notebook_url("review.ipynb"))
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            page.wait_for_selector("text=/\\| Idle$/", timeout=90_000)
            page.locator(".jp-Cell .jp-InputArea-editor").first.click()
            times = {"open (collapsed)": _seconds(page, lambda: page.keyboard.press("Shift+Enter"), rows, fields)}
            expand = page.locator(".glan-expand-discipline")
            shown = min(len(nodes), MAX_ROWS)
            times["expand to disciplines"] = _seconds(page, expand.click, rows, shown)
            first_remove = page.locator(f"{rows} .glan-remove").first
            struck = sum(n.path[0] == nodes[0].name for n in nodes)  # the field and its subtree, all on screen
            times["vote (remove a field)"] = _seconds(page, first_remove.click, ".glan-tree .glan-label s", struck)
            collapse = page.locator(".glan-collapse-all")
            times["collapse all"] = _seconds(page, collapse.click, rows, fields)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--browser", action="store_true", help="also time the widget in JupyterLab + Chromium")
    args = parser.parse_args()
    trees = {"paper (~160 nodes)": paper_tree(), "synthetic (1,000 nodes)": synthetic_tree()}
    load = os.getloadavg()[0]
    lines = [
        f"Review widget, kernel side, median of {args.repeat}; load average {load:.1f} on {os.cpu_count()} cores.",
        "",
        "| tree | step | ms | rows built |",
        "|---|---|---:|---:|",
    ]
    for tree_name, nodes in trees.items():
        for step, (ms, rows) in measure(nodes, args.repeat).items():
            lines.append(f"| {tree_name} ({len(nodes)}) | {step} | {ms:.0f} | {rows} |")
    if args.browser:
        lines += ["", "In the browser (JupyterLab + headless Chromium, one run each), seconds until the page shows it:"]
        lines += ["", "| tree | step | s |", "|---|---|---:|"]
        for (tree_name, nodes), maker in zip(trees.items(), ("paper_tree", "synthetic_tree"), strict=True):
            for step, seconds in measure_browser(maker, nodes).items():
                lines.append(f"| {tree_name} ({len(nodes)}) | {step} | {seconds:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
