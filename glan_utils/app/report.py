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

import nbformat
import pandas as pd
import plotly.io as pio
from jinja2 import DictLoader
from nbconvert import HTMLExporter
from plotly.offline import get_plotlyjs

from glan_utils.app.findings import FINDINGS_CSS, findings_html, headline, made_by, stage_problems
from glan_utils.app.summary import existing, markdown_table, run_table, totals_line
from glan_utils.core.paths import CONFIG, DATASET, NOTEBOOKS, REPORT
from glan_utils.data.run_card import build_run_card

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
    title = nbformat.v4.new_markdown_cell(
        f"# GLAN run report: `{run_dir.name}`\n\n{stage_problems(run_dir)}\n\n{made_by(run_dir)}\n\n{headline(run_dir)}"
    )
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
    run_dir = existing(run_dir)
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
    target = Path(out) if out else run_dir / REPORT
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html, encoding="utf-8")
    return target
