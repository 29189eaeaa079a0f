"""Summaries of a run (stage status, record counts, cost) and its one-page, offline HTML report.

The report merges the run's executed notebooks into one notebook, prefixed with the stage/cost table, the
`config.yaml` snapshot and the data set card, and exports it once with nbconvert. Plotly figures are stored
in notebooks as JSON only (`application/vnd.plotly.v1+json`, which static HTML cannot show), so each becomes a
`Plotly.newPlot` div, and plotly.js is inlined once in the page head: the file works offline and can be sent.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import plotly.io as pio
from jinja2 import DictLoader
from nbconvert import HTMLExporter
from plotly.offline import get_plotlyjs

from glan_utils.core.errors import InputError
from glan_utils.llm.ledger import read_ledger
from glan_utils.runs.store import RunStore, is_alive

PLOTLY_MIME = "application/vnd.plotly.v1+json"
TEMPLATE = "glan_report.html.j2"
# The lab template pulls require.js, MathJax and mermaid from CDNs; the report needs none of them offline,
# and plotly.js must load before any AMD loader or it registers as a module instead of `window.Plotly`.
_TEMPLATE_SOURCE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}<script type="text/javascript">{{ resources.plotly_js }}</script>{%- endblock -%}
{%- block html_head_js_mathjax -%}{%- endblock -%}
{%- block html_head_js_mermaidjs -%}{%- endblock -%}
"""
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)


def _existing(run_dir: str | Path) -> Path:
    """The run directory, which must exist (RunStore would create it)."""
    if not Path(run_dir).is_dir():
        raise InputError(f"no such run: {run_dir}")
    return Path(run_dir)


def _line_count(path: Path) -> int | None:
    if not path.exists():
        return None
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def _status(info: dict[str, Any]) -> str:
    """The manifest's status, except that a `running` stage whose process is gone was interrupted."""
    status = info.get("status", "-")
    return "interrupted (process gone)" if status == "running" and not is_alive(info) else status


def run_table(run_dir: str | Path) -> pd.DataFrame:
    """One row per stage (notebooks and generation stages): status, records, failures, calls, tokens, cost.

    Records are lines of `<stage>.jsonl` (cheap at any size); call figures come from the cost ledger. A stage
    the manifest calls `running` whose recorded process no longer exists shows as interrupted.
    """
    store = RunStore(_existing(run_dir))
    stages = store.read_manifest().get("stages", {})
    ledger = read_ledger(store.path("ledger.jsonl"))
    rows = []
    for name in [*stages, *(s for s in ledger if s not in stages and s != "all")]:
        info, spent = stages.get(name, {}), ledger.get(name)
        rows.append(
            {
                "stage": name,
                "status": _status(info),
                "records": _line_count(store.records_path(name)),
                "failed": info.get("failed"),
                "calls": spent.calls if spent else None,
                "cache_hits": spent.cached if spent else None,
                "call_failures": spent.failed if spent else None,
                "tokens": spent.prompt_tokens + spent.completion_tokens if spent else None,
                "cost_usd": round(spent.cost_usd, 4) if spent else None,
            }
        )
    table = pd.DataFrame(
        rows,
        columns=["stage", "status", "records", "failed", "calls", "cache_hits", "call_failures", "tokens", "cost_usd"],
    )
    return table.astype({c: "Int64" for c in ["records", "failed", "calls", "cache_hits", "call_failures", "tokens"]})


def run_totals(run_dir: str | Path) -> dict[str, Any]:
    """Whole-run ledger totals: calls, cache hits, failed calls, tokens and dollars."""
    total = read_ledger(Path(run_dir) / "ledger.jsonl")["all"]
    return {
        "calls": total.calls,
        "cache_hits": total.cached,
        "call_failures": total.failed,
        "tokens": total.prompt_tokens + total.completion_tokens,
        "cost_usd": round(total.cost_usd, 4),
    }


def totals_line(run_dir: str | Path) -> str:
    """The run's ledger totals in one sentence."""
    t = run_totals(run_dir)
    return (
        f"{t['calls']:,} model calls, {t['cache_hits']:,} cache hits, {t['call_failures']:,} failed, "
        f"{t['tokens']:,} tokens, ${t['cost_usd']:,.4f}"
    )


def markdown_table(table: pd.DataFrame) -> str:
    if not len(table):
        return "_nothing recorded yet_"
    return table.astype(object).where(table.notna(), "").to_markdown(index=False)


def _card_markdown(card: str) -> str:
    """A dataset card's YAML front matter shown as a code block, the rest as markdown."""
    match = _FRONT_MATTER.match(card)
    if not match:
        return card
    return f"```yaml\n{match.group(1)}\n```\n\n{card[match.end() :]}"


def _summary_cells(run_dir: Path) -> list[nbformat.NotebookNode]:
    md = nbformat.v4.new_markdown_cell
    cells = [
        md(f"# GLAN run report: `{run_dir.name}`\n\nTotal: {totals_line(run_dir)}."),
        md(f"## Stages and cost\n\n{markdown_table(run_table(run_dir))}"),
    ]
    config = run_dir / "config.yaml"
    if config.exists():
        text = config.read_text(encoding="utf-8")
        cells.append(md(f"## Configuration (`config.yaml`)\n\n```yaml\n{text}```"))
    card = run_dir / "dataset" / "README.md"
    if card.exists():
        cells.append(md(f"## Data set card\n\n{_card_markdown(card.read_text(encoding='utf-8'))}"))
    return cells


def _static_plotly(output: nbformat.NotebookNode) -> None:
    """Replace a plotly JSON output by a div that draws the figure with the page's inlined plotly.js."""
    data = output.get("data", {})
    if PLOTLY_MIME in data:
        html = pio.to_html(data[PLOTLY_MIME], include_plotlyjs=False, full_html=False, validate=False)
        output["data"] = {"text/html": html}


def _notebook_cells(path: Path) -> list[nbformat.NotebookNode]:
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            _static_plotly(output)
    return [nbformat.v4.new_markdown_cell(f"---\n\n<small>notebook `{path.name}`</small>"), *notebook.cells]


def build_notebook(run_dir: str | Path) -> nbformat.NotebookNode:
    """The report as one notebook: the summary cells, then every executed notebook of the run in order."""
    run_dir = _existing(run_dir)
    report = nbformat.v4.new_notebook()
    report.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    report.cells = _summary_cells(run_dir)
    for path in sorted((run_dir / "notebooks").glob("*.ipynb")):
        report.cells.extend(_notebook_cells(path))
    return report


def render_report(run_dir: str | Path, out: str | Path | None = None, *, show_code: bool = False) -> Path:
    """Write the self-contained HTML report (default `outputs/<run>/report.html`) and return its path."""
    run_dir = Path(run_dir)
    exporter = HTMLExporter(
        extra_loaders=[DictLoader({TEMPLATE: _TEMPLATE_SOURCE})],
        template_file=TEMPLATE,
        exclude_input=not show_code,
        exclude_input_prompt=not show_code,
        exclude_output_prompt=not show_code,
        embed_images=True,
    )
    resources = {"plotly_js": get_plotlyjs(), "metadata": {"name": f"GLAN report: {run_dir.name}"}}
    html, _ = exporter.from_notebook_node(build_notebook(run_dir), resources=resources)
    target = Path(out) if out else run_dir / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html, encoding="utf-8")
    return target
