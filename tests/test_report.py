"""The run table and the one-page HTML report: offline (plotly.js inlined once), code hidden or shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser.runs import CODE_MARKER, make_report_run

from glan_utils.app.report import render_report, run_table, run_totals
from glan_utils.core.errors import InputError


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_report_run(tmp_path / "outputs" / "demo")


def test_run_table_joins_manifest_records_and_ledger(run_dir: Path) -> None:
    table = run_table(run_dir).set_index("stage")
    assert table.loc["answers", "status"] == "complete_with_failures"
    assert table.loc["answers", "records"] == 2
    assert (table.loc["answers", "calls"], table.loc["answers", "cache_hits"]) == (3, 1)
    assert table.loc["answers", "call_failures"] == 1
    assert table.loc["01_tiny", "status"] == "complete"
    assert run_totals(run_dir)["tokens"] == 45


def test_report_is_offline_and_hides_code(run_dir: Path) -> None:
    html = render_report(run_dir).read_text(encoding="utf-8")
    assert html.count('class="plotly-graph-div"') == 2
    assert html.count("Plotly.newPlot") == 2
    assert html.count("plotly.js v") == 1, "plotly.js must be inlined exactly once"
    assert 'src="http' not in html, "no CDN scripts: the page must work offline"
    assert CODE_MARKER not in html
    assert "kept-rows" in html and "What this stage does." in html
    assert "<h1" in html and "Tiny GLAN data set" in html and "<em>synthetic</em>" in html
    assert "pretty_name" in html, "the card's YAML header is shown (as a code block)"
    assert "fake-model" in html, "config.yaml is included"


def test_report_can_show_code_and_write_elsewhere(run_dir: Path, tmp_path: Path) -> None:
    out = render_report(run_dir, tmp_path / "share" / "r.html", show_code=True)
    assert out == tmp_path / "share" / "r.html"
    assert CODE_MARKER in out.read_text(encoding="utf-8")


def test_missing_run_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such run"):
        render_report(tmp_path / "nope")
