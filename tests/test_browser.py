"""Real browser checks: the review widget in JupyterLab (remove and save; the paper-sized tree with collapse,
filter, a suggested child, a conflict between two reviewers' files, save), and the HTML report draws its plots.

Both drive Debian's headless Chromium (`scripts/install_browser.sh`) and reach only loopback and local files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from browser.chromium import browser_page
from browser.jupyter import jupyter_lab
from browser.runs import make_findings_run, make_report_run
from browser.trees import paper_tree, write_yaml

from glan_utils.app.report import render_report
from glan_utils.core.aio import run
from glan_utils.runs.store import RunStore
from glan_utils.settings import load_settings
from glan_utils.stages import pipeline
from glan_utils.stages.review import MANIFEST_ENTRY, Review, apply_review, load_reviews, save_version, slug, versions
from glan_utils.testing import OpenAIServer
from glan_utils.testing.openai_server import Behavior

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "01_taxonomy.ipynb"


def _descendants(nodes: list, root_id: str) -> set[str]:
    ids, grew = {root_id}, True
    while grew:
        more = {n.id for n in nodes if n.parent_id in ids} - ids
        ids, grew = ids | more, bool(more)
    return ids


def test_review_widget_removes_subtree_in_jupyterlab(tmp_path: Path) -> None:
    """Run All in JupyterLab, press `remove` on a sub-field and Save: the saved review drops its subtree."""
    started = time.perf_counter()
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    with OpenAIServer(models=["fake-model"]) as server:
        # the run is named, so the notebook (which otherwise writes to `scratch`) and this test share it
        env = {"GLAN_LLM__BASE_URL": server.base_url, "GLAN_LLM__MODEL": "fake-model", "GLAN_RUN_NAME": "lab"}
        # The taxonomy exists before the browser opens (the notebook's own run then resumes with no calls).
        out = root / "outputs"
        where = {"output_dir": str(out), "llm.cache_path": str(out / "cache.sqlite")}
        settings = load_settings(None, where, environ=env)
        run(pipeline.run(settings, "taxonomy"))
        nodes = list(RunStore(settings.run_dir).iter_records("taxonomy"))
        with jupyter_lab(root, env) as lab, browser_page() as page:
            page.goto(lab.notebook_url(NOTEBOOK.name))
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            page.get_by_text(re.compile(r"\| Idle$")).wait_for(timeout=90_000)  # status bar: kernel ready
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            page.locator(".glan-expand-subfield").click()  # the tree opens collapsed to its fields
            row = page.locator(".glan-review .glan-row.glan-subfield").first
            row.wait_for(timeout=90_000)
            removed_id = re.search(r"glan-id-(\S+)", row.get_attribute("class") or "").group(1)
            row.locator(".glan-remove").click()
            page.locator(".glan-save").click()
            page.locator(".glan-status", has_text="type your name").wait_for(timeout=30_000)  # one person, one vote
            page.locator(".glan-reviewer input").fill("ann")
            page.locator(".glan-save").click()
            page.locator(".glan-status", has_text="saved to").wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "review.png"))
    saved = list((settings.run_dir / "reviews").glob("*.json"))
    assert len(saved) == 1
    kept = {n.id for n in apply_review(nodes, load_reviews(saved[0])[0])}
    subtree = _descendants(nodes, removed_id)
    assert len(subtree) > 1, "the removed sub-field should have disciplines under it"
    assert kept == {n.id for n in nodes} - subtree
    print(f"browser widget test wall time: {time.perf_counter() - started:.1f} s")


def _open_notebook(page: object, lab: object) -> float:
    """Open notebook 01, Run All, wait for the review tree; seconds from Run All to the first row."""
    page.goto(lab.notebook_url(NOTEBOOK.name))
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.get_by_text(re.compile(r"\| Idle$")).wait_for(timeout=90_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    started = time.perf_counter()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    page.locator(".glan-review .glan-row").first.wait_for(timeout=120_000)
    shown = time.perf_counter() - started
    # the widget's buttons are answered by the kernel: wait, as a user would, until the cells after it have run
    page.locator(".jp-Notebook .jp-InputPrompt", has_text="[*]").first.wait_for(state="detached", timeout=180_000)
    return shown


def _timed(check: object) -> float:
    started = time.perf_counter()
    check()
    return time.perf_counter() - started


def test_review_widget_on_the_paper_tree(tmp_path: Path) -> None:
    """The paper-sized tree: collapse and expand, filter, accept a suggested child (scripted reply) that bob had
    added by hand, settle a tie between two reviewers' files with a third vote, Save; the merged tree on disk
    has both changes."""
    expect = pytest.importorskip("playwright.sync_api").expect
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    tree = paper_tree()
    fields = [n for n in tree if n.level == "field"]
    contested = next(n for n in tree if n.level == "discipline")  # the first discipline of the first field
    target = next(n for n in tree if n.level == "discipline" and n.parent_id != contested.parent_id)
    children = {node.id: sum(n.parent_id == node.id for n in tree) for node in tree}
    first_open = len(fields) + children[fields[0].id]  # rows with the first field expanded
    with OpenAIServer(models=["fake-model"]) as server:
        env = {
            "GLAN_LLM__BASE_URL": server.base_url,
            "GLAN_LLM__MODEL": "fake-model",
            "GLAN_RUN_NAME": "lab",
            "GLAN_LLM__CACHE_PATH": str(tmp_path / "cache.sqlite"),
            "GLAN_TAXONOMY__SOURCE": str(write_yaml(tree, tmp_path / "paper.yaml")),
        }
        settings = load_settings(None, {"output_dir": str(root / "outputs")}, environ=env)
        run(pipeline.run(settings, "taxonomy"))
        nodes = list(RunStore(settings.run_dir).iter_records("taxonomy"))
        ann, bob = Review(reviewer="ann"), Review(reviewer="bob")
        ann.decide(contested.id, "remove")  # bob keeps it: a tie
        bob.decide(fields[-1].id, "rename", "Last Field")  # ann keeps the name: a rename tie
        bob.add(target.parent_id, "Oral Surgery", "surgery of the mouth")  # one of three: pending
        for review in (ann, bob):
            save_version(settings.run_dir, review, nodes)
        with jupyter_lab(root, env) as lab, browser_page(viewport=(1500, 1400)) as page:
            opened = _open_notebook(page, lab)
            rows = page.locator(".glan-review .glan-tree .glan-row")
            expect(rows).to_have_count(len(fields), timeout=30_000)  # collapsed: fields only
            first = page.locator(f".glan-node-{slug(fields[0].name)} .glan-toggle").first
            first.click()
            expect(rows).to_have_count(first_open, timeout=30_000)
            first.click()
            expect(rows).to_have_count(len(fields), timeout=30_000)
            page.locator(".glan-expand-discipline").click()
            expanded = _timed(lambda: expect(rows).to_have_count(len(tree), timeout=60_000))
            page.locator(".glan-collapse-all").click()
            expect(rows).to_have_count(len(fields), timeout=30_000)
            filter_box = page.locator(".glan-filter input")
            filter_box.fill(target.name)
            filter_box.press("Enter")
            expect(rows).to_have_count(3, timeout=30_000)
            label = page.locator(f".glan-node-{slug(target.name)} .glan-label span").first
            assert label.get_attribute("title") == (target.description or target.name)  # the description on hover
            parent = page.locator(".glan-tree .glan-row.glan-subfield").first
            sibling_names = [n.name for n in tree if n.parent_id == target.parent_id]
            reply = [{"name": "Oral Surgery", "description": "surgery of the mouth"}, {"name": sibling_names[0]}]
            server.script(Behavior("ok", content=json.dumps({"items": reply})))
            parent.locator(".glan-propose").first.click()
            suggestion = page.locator(".glan-suggestion-oral-surgery")
            suggestion.wait_for(timeout=60_000)
            expect(page.locator(".glan-suggestion")).to_have_count(1)  # the existing sibling is left out
            kept_total = len([n for n in tree if n.level == "discipline"])
            expect(page.locator(".glan-kept-count")).to_have_text(str(kept_total))
            expect(page.locator(".glan-pending")).to_contain_text("Oral Surgery (1 of 3 reviewers)")
            suggestion.locator(".glan-accept").click()  # cid agrees with bob: two of three
            expect(suggestion).to_have_count(0, timeout=30_000)
            expect(page.locator(".glan-kept-count")).to_have_text(str(kept_total + 1), timeout=30_000)
            conflict = page.locator(".glan-conflicts .glan-vote").first
            expect(conflict).to_contain_text("ann: remove, bob: keep")
            expect(conflict).to_contain_text("tie")
            conflict.locator(".glan-resolve-remove").click()
            expect(page.locator(".glan-kept-count")).to_have_text(str(kept_total), timeout=30_000)  # shown pre-Save
            expect(page.locator(".glan-merged")).to_contain_text(f"{contested.name}: keep -> remove")
            page.locator(".glan-reviewer input").fill("cid")
            filter_box.fill("")
            filter_box.press("Enter")
            page.locator(f".glan-node-{slug(fields[0].name)} .glan-toggle").first.click()
            page.locator(f".glan-node-{slug(contested.path[1])} .glan-toggle").first.click()
            expect(rows).to_have_count(first_open + children[contested.parent_id], timeout=30_000)
            expect(page.locator(f".glan-node-{slug(contested.name)} .glan-label s")).to_have_count(1)  # struck out
            page.locator(".glan-save").click()
            page.locator(".glan-status", has_text="saved to").wait_for(timeout=30_000)
            shots = Path(os.environ.get("GLAN_SCREENSHOTS", tmp_path))
            shots.mkdir(parents=True, exist_ok=True)
            page.locator(".glan-review").screenshot(path=str(shots / "review_widget_paper_tree.png"))
    kept = pipeline.kept_taxonomy(settings)  # what the next stage reads: all three reviewers merged, from disk
    kept_names = {n.name for n in kept}
    assert contested.name not in kept_names and "Oral Surgery" in kept_names and "Last Field" not in kept_names
    added = next(n for n in kept if n.name == "Oral Surgery")
    assert added.path[:-1] == next(n for n in tree if n.id == target.parent_id).path
    assert [v.version for v in versions(settings.run_dir, "cid")] == [1]
    manifest = RunStore(settings.run_dir).read_manifest()["stages"][MANIFEST_ENTRY]
    assert manifest["versions"] == {"ann": 1, "bob": 1, "cid": 1}
    print(f"paper tree ({len(tree)} nodes): Run All -> tree {opened:.1f} s, expand all {expanded:.2f} s")


def test_report_draws_plotly_figures_offline(tmp_path: Path) -> None:
    """The report opens from disk with the network blocked and plotly draws every figure."""
    report = render_report(make_report_run(tmp_path / "outputs" / "demo"))
    with browser_page() as page:
        page.goto(report.as_uri())
        page.wait_for_selector(".plotly .main-svg", state="attached", timeout=30_000)  # in a collapsed section
        assert page.locator(".js-plotly-plot").count() == 2
        assert page.locator("summary", has_text="Data set card").count() == 1


def test_report_first_screen_draws_the_findings(tmp_path: Path) -> None:
    """The first screen (1280x900) shows the four findings figures drawn (SVG marks, not empty divs) and the
    benchmark table with intervals; the rest is collapsed. The screenshot is kept beside the report."""
    report = render_report(make_findings_run(tmp_path / "outputs" / "demo"))
    with browser_page() as page:
        page.goto(report.as_uri())
        page.wait_for_selector(".glan-finding .main-svg", timeout=30_000)
        for name in ("coverage", "removed", "mix", "benchmarks"):
            finding = page.locator(f'.glan-finding[data-finding="{name}"]')
            marks = finding.locator("path.surface, .bars path, g.slice path")
            assert marks.count() > 0, f"{name}: nothing drawn"
            box = finding.bounding_box()
            assert box and box["y"] + box["height"] / 2 < 900, f"{name} is below the first screen"
        table = page.locator("table.glan-benchmarks")
        assert table.bounding_box()["y"] < 900 and "95% CI" in table.inner_text()
        assert page.locator("details.glan-fold[open]").count() == 0
        assert not page.locator("summary", has_text="Configuration").first.evaluate("e => e.parentElement.open")
        page.screenshot(path=str(report.parent / "report_first_screen.png"))
    assert (report.parent / "report_first_screen.png").stat().st_size > 10_000
