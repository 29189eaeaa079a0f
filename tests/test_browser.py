"""Real browser checks: the review widget in JupyterLab saves a review, and the HTML report draws its plots.

Both drive Debian's headless Chromium (`scripts/install_browser.sh`) and reach only loopback and local files.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from browser.chromium import browser_page
from browser.jupyter import jupyter_lab
from browser.runs import make_findings_run, make_report_run

from glan_utils.app.report import render_report
from glan_utils.core.aio import run
from glan_utils.runs.store import RunStore
from glan_utils.settings import load_settings
from glan_utils.stages import pipeline
from glan_utils.stages.review import apply_review, load_reviews
from glan_utils.testing import OpenAIServer

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
        env = {"GLAN_LLM__BASE_URL": server.base_url, "GLAN_LLM__MODEL": "fake-model"}
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
            row = page.locator(".glan-review .glan-row.glan-subfield").first
            row.wait_for(timeout=90_000)
            removed_id = re.search(r"glan-id-(\S+)", row.get_attribute("class") or "").group(1)
            row.locator(".glan-remove").click()
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
