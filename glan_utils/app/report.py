"""Summaries of a run (stage status, record counts, cost) and its one-page, offline HTML report.

The report opens with one screen of findings (`app/findings.py`: pairs generated and kept, cost, removed by
reason, coverage, difficulty and question-type mix, benchmarks with intervals); below it, collapsed, the
stage/cost table, the run card, the prompts, the `config.yaml` snapshot, the data set card and each of the run's
executed notebooks. It is one merged notebook exported once with nbconvert; a cell whose metadata has
`glan_fold` opens a collapsed `<details>` section (closing the previous one) in the page template. Plotly
figures are stored in notebooks as JSON only (`application/vnd.plotly.v1+json`, which static HTML cannot show), so
each becomes a `Plotly.newPlot` div, and plotly.js is inlined once in the page head: the file works offline and
can be sent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import plotly.io as pio
from jinja2 import DictLoader
from nbconvert import HTMLExporter
from plotly.offline import get_plotlyjs

from glan_utils.app.findings import FINDINGS_CSS, findings_html, headline
from glan_utils.core.errors import InputError
from glan_utils.core.paths import CONFIG, DATASET, LEDGER, NOTEBOOKS
from glan_utils.data.run_card import build_run_card
from glan_utils.llm.ledger import read_ledger
from glan_utils.runs.store import RunStore, is_alive
from glan_utils.stages.pipeline import stale_stages

PLOTLY_MIME = "application/vnd.plotly.v1+json"
TEMPLATE = "glan_report.html.j2"
# The lab template pulls require.js, MathJax and mermaid from CDNs; the report needs none of them offline,
# and plotly.js must load before any AMD loader or it registers as a module instead of `window.Plotly`.
_TEMPLATE_SOURCE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}<script type="text/javascript">{{ resources.plotly_js }}</script>{%- endblock -%}
{%- block html_head_js_mathjax -%}{%- endblock -%}
{%- block html_head_js_mermaidjs -%}{%- endblock -%}
{%- block any_cell scoped -%}
{%- if cell.metadata.glan_fold -%}
{%- if cell.metadata.glan_fold_close %}</details>{% endif -%}
<details class="glan-fold"><summary>{{ cell.metadata.glan_fold | e }}</summary>
{%- endif -%}
{{ super() }}
{%- endblock any_cell -%}
{% block body_footer %}
{%- if nb.metadata.glan_folds %}</details>{% endif -%}
<script>document.querySelectorAll("details.glan-fold").forEach(d => d.addEventListener("toggle", () =>
  d.querySelectorAll(".js-plotly-plot").forEach(p => window.Plotly && Plotly.Plots.resize(p))));</script>
</main>
</body>
{% endblock body_footer %}
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


def _status(info: dict[str, Any], stale: str | None = None) -> str:
    """The manifest's status, except that a `running` stage whose process is gone was interrupted, and a
    complete one whose inputs changed since is stale."""
    status = info.get("status", "-")
    if stale:
        return f"stale ({stale})"
    return "interrupted (process gone)" if status == "running" and not is_alive(info) else status


def _reasons(counts: dict[str, int]) -> str | None:
    """A stage's failures by reason, most frequent first: `refused (HTTP 400 context_length_exceeded) x3; ...`."""
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    return "; ".join(f"{reason} x{n}" for reason, n in ranked) or None


def run_table(run_dir: str | Path) -> pd.DataFrame:
    """One row per stage (notebooks and generation stages): status, records, failures (by reason), calls, tokens, cost.

    Records are lines of `<stage>.jsonl` (cheap at any size); call figures come from the cost ledger. A stage
    the manifest calls `running` whose recorded process no longer exists shows as interrupted; a complete one
    whose inputs changed since it ran (a saved review, an earlier stage rerun) shows as stale. `outside_plan`
    counts records on disk that the current plan no longer has (e.g. after lowering `questions_per_syllabus`).
    """
    store = RunStore(_existing(run_dir))
    stages = store.read_manifest().get("stages", {})
    stale = stale_stages(store.root)
    ledger = read_ledger(store.path("ledger.jsonl"))
    rows = []
    for name in [*stages, *(s for s in ledger if s not in stages and s != "all")]:
        info, spent = stages.get(name, {}), ledger.get(name)
        rows.append(
            {
                "stage": name,
                "status": _status(info, stale.get(name)),
                "records": _line_count(store.records_path(name)),
                "failed": info.get("failed"),
                "failures_by_reason": _reasons(info.get("failures_by_reason") or {}),
                "outside_plan": info.get("outside_plan"),
                "calls": spent.calls if spent else None,
                "cache_hits": spent.cached if spent else None,
                "call_failures": spent.failed if spent else None,
                "tokens": spent.prompt_tokens + spent.completion_tokens if spent else None,
                "cost_usd": round(spent.cost_usd, 4) if spent else None,
            }
        )
    table = pd.DataFrame(
        rows,
        columns=[
            "stage", "status", "records", "failed", "failures_by_reason", "outside_plan", "calls", "cache_hits",
            "call_failures", "tokens", "cost_usd",
        ],
    )  # fmt: skip
    counts = ["records", "failed", "outside_plan", "calls", "cache_hits", "call_failures", "tokens"]
    return table.astype(dict.fromkeys(counts, "Int64"))


def run_totals(run_dir: str | Path) -> dict[str, Any]:
    """Whole-run ledger totals: calls, cache hits, failed calls, tokens and dollars."""
    total = read_ledger(Path(run_dir) / LEDGER)["all"]
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


def _fold(cell: nbformat.NotebookNode, title: str) -> nbformat.NotebookNode:
    """Mark `cell` as the first of a collapsed section titled `title`."""
    cell.metadata["glan_fold"] = title
    return cell


def _findings_cells(run_dir: Path) -> list[nbformat.NotebookNode]:
    """The first screen: title, the headline sentence, and the figures and benchmark table as one HTML output."""
    figures = nbformat.v4.new_code_cell("findings", execution_count=None)
    figures.metadata["transient"] = {"remove_source": True}
    html = FINDINGS_CSS + findings_html(run_dir)
    figures.outputs = [nbformat.v4.new_output("display_data", data={"text/html": html})]
    title = nbformat.v4.new_markdown_cell(f"# GLAN run report: `{run_dir.name}`\n\n{headline(run_dir)}")
    return [title, figures]


def _summary_cells(run_dir: Path) -> list[nbformat.NotebookNode]:
    md = nbformat.v4.new_markdown_cell
    cells = [
        _fold(md(f"Total: {totals_line(run_dir)}.\n\n{markdown_table(run_table(run_dir))}"), "Stages and cost"),
    ]
    card = build_run_card(run_dir)
    cells.append(_fold(md(f"```json\n{json.dumps(card, indent=1, default=str)}\n```"), "Run card (run_card.json)"))
    prompts = pd.DataFrame(list(card["prompts"].items()), columns=["prompt", "sha256 (12)"])
    cells.append(_fold(md(markdown_table(prompts)), "Prompts (template hashes)"))
    config = run_dir / CONFIG
    if config.exists():
        text = config.read_text(encoding="utf-8")
        cells.append(_fold(md(f"```yaml\n{text}```"), "Configuration (config.yaml)"))
    card_path = run_dir / DATASET / "README.md"
    if card_path.exists():
        cells.append(_fold(md(_card_markdown(card_path.read_text(encoding="utf-8"))), "Data set card"))
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
    marker = nbformat.v4.new_markdown_cell(f"<small>notebook `{path.name}`</small>")
    return [_fold(marker, f"Notebook {path.stem}"), *notebook.cells]


def build_notebook(run_dir: str | Path) -> nbformat.NotebookNode:
    """The report as one notebook: the summary cells, then every executed notebook of the run in order."""
    run_dir = _existing(run_dir)
    report = nbformat.v4.new_notebook()
    report.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    report.cells = _findings_cells(run_dir) + _summary_cells(run_dir)
    for path in sorted((run_dir / NOTEBOOKS).glob("*.ipynb")):
        report.cells.extend(_notebook_cells(path))
    folds = [cell for cell in report.cells if cell.metadata.get("glan_fold")]
    for cell in folds[1:]:
        cell.metadata["glan_fold_close"] = True
    report.metadata["glan_folds"] = len(folds)
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
