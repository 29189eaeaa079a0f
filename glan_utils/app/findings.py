"""The report's first screen: what a reader came for, drawn from the run's files in one view.

Which stages did not complete (and why) or are stale, which models made the data (marking the embedded smoke-test
model), pairs generated and kept, the cost, the records removed by reason, the coverage sunburst, the difficulty and
question-type mix, and the benchmark table (base vs tuned vs paper, with n, protocol and 95% intervals). Each
figure is a small plotly div in one flex grid (the page inlines plotly.js once); a part the run has not reached
yet says so in words instead of drawing an empty box. Quality and diversity per discipline are notebook 04's heat
maps, in its section of the report."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import plotly.io as pio
import pyarrow.parquet as pq
import yaml

from glan_utils.core.jsonl import iter_jsonl
from glan_utils.core.paths import CONFIG, DATASET, DATASET_REPORT, EVALUATION, LEDGER, MANIFEST, QA_TABLE
from glan_utils.core.stale import stale_stages
from glan_utils.evaluation.harness import BenchmarkScore, not_run
from glan_utils.llm.ledger import read_ledger
from glan_utils.settings.evaluation import EvalSettings
from glan_utils.views.eval_plots import benchmark_bars, comparison_table
from glan_utils.views.plots import coverage
from glan_utils.views.style import SUNBURST_PX, colors, styled

FIGURE_HEIGHT = SUNBURST_PX // 3 - 4  # three beside the coverage sunburst, which spans their rows


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _qa(run_dir: Path) -> pd.DataFrame | None:
    """The exported pairs' place, difficulty and format; a data set exported before formats were recorded reads
    as untyped."""
    path = run_dir / DATASET / QA_TABLE
    if not path.is_file():
        return None
    wanted = ["field", "subfield", "discipline", "subject", "difficulty", "question_type"]
    present = set(pq.read_schema(path).names)
    qa = pq.read_table(path, columns=[c for c in wanted if c in present]).to_pandas()
    return qa if "question_type" in qa else qa.assign(question_type="")


def _small(figure: go.Figure, title: str, height: int = FIGURE_HEIGHT) -> go.Figure:
    return styled(figure).update_layout(
        height=height, margin={"l": 40, "r": 10, "t": 40, "b": 40}, title={"text": title, "font": {"size": 14}}
    )


def _removed(report: dict[str, Any]) -> go.Figure:
    reasons = {"exact duplicate": report["exact_duplicates"], "near duplicate": report["near_duplicates"]}
    reasons |= {f"contaminated: {name}": f["removed"] for name, f in report.get("benchmarks", {}).items()}
    reasons["quality filter"] = report.get("quality_removed", 0)
    frame = pd.DataFrame({"reason": list(reasons), "records": list(reasons.values())})
    return _small(px.bar(frame, x="reason", y="records"), f"Removed by reason ({report['records']:,} in)")


def _mix(qa: pd.DataFrame) -> go.Figure:
    """Pairs by the question format drawn for them (`questions.question_types`) and difficulty."""
    kinds = qa.question_type.fillna("").replace("", "untyped")
    frame = qa.assign(type=kinds).groupby(["type", "difficulty"]).size()
    pairs = frame.reset_index(name="pairs")
    figure = px.bar(
        pairs, x="type", y="pairs", color="difficulty", color_discrete_map=colors(pairs["difficulty"].unique())
    )
    return _small(figure, "Difficulty and question-type mix")


def _scores(run_dir: Path) -> list[BenchmarkScore]:
    rows = _read_json(run_dir / EVALUATION / "benchmarks.json") or []
    return [BenchmarkScore(**{k: v for k, v in row.items() if k != "protocol_note"}) for row in rows]


def headline(run_dir: Path) -> str:
    """One sentence: pairs generated, kept (train/test), removed by reason, failed answers and the cost."""
    report = _read_json(run_dir / DATASET / DATASET_REPORT)
    total = read_ledger(run_dir / LEDGER)["all"]
    cost = f"${total.cost_usd:,.4f} for {total.calls:,} model calls ({total.cached:,} cached, {total.failed:,} failed)"
    if report is None:
        return f"No data set built yet (notebook 05). Cost so far: {cost}."
    quality = report.get("quality_removed", 0)
    removed = report["exact_duplicates"] + report["near_duplicates"] + report["contaminated"] + quality
    return (
        f"**{report['records']:,} pairs generated, {report['kept']:,} kept** (train {report['train']:,}, test "
        f"{report['test']:,}); {removed:,} removed: {report['exact_duplicates']:,} exact and "
        f"{report['near_duplicates']:,} near duplicates, {report['contaminated']:,} contaminated, {quality:,} by the "
        f"quality filter. Cost: {cost}."
    )


_NOT_DONE = ("failed", "stopped", "interrupted")
EMBEDDED_NOTE = "the embedded smoke-test model: its output is not data worth training on"


def stage_problems(run_dir: Path) -> str:
    """One line: the stages that failed, stopped or were interrupted, each with its reason, and those now stale;
    or that every stage run so far completed."""
    stages = (_read_json(run_dir / MANIFEST) or {}).get("stages", {})
    bad = [
        f"{name} {info['status']}" + (f" ({str(info['error'])[:200]})" if info.get("error") else "")
        for name, info in stages.items()
        if str(info.get("status", "")).startswith(_NOT_DONE)
    ]
    stale = [f"{name} ({why})" for name, why in stale_stages(run_dir).items()]
    parts = [f"**Not completed:** {'; '.join(bad)}."] if bad else ["Every stage run so far completed."]
    return " ".join(parts + ([f"**Stale** (rerun them): {'; '.join(stale)}."] if stale else []))


def made_by(run_dir: Path) -> str:
    """One line: the models that answered each stage's calls (from the ledger), marking the embedded model."""
    models: dict[str, set[str]] = {}
    for line in iter_jsonl(run_dir / LEDGER):
        models.setdefault(str(line.get("model")), set()).add(str(line.get("stage")))
    if not models:
        return "No model calls yet."
    llm = (_read_json_yaml(run_dir / CONFIG) or {}).get("llm") or {}
    embedded = not llm.get("base_url") and not llm.get("base_urls")
    parts = [f"{model} ({', '.join(sorted(stages))})" for model, stages in sorted(models.items())]
    mark = f" ⚠ **{EMBEDDED_NOTE}.**" if embedded else ""
    return f"**Data made by:** {'; '.join(parts)}.{mark}"


def _read_json_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None


def _figure_html(figure: go.Figure, name: str) -> str:
    body = pio.to_html(figure, include_plotlyjs=False, full_html=False, default_width="100%", validate=False)
    return f'<div class="glan-finding" data-finding="{name}">{body}</div>'


def _missing(name: str, text: str) -> str:
    return f'<div class="glan-finding glan-missing" data-finding="{name}"><p>{html.escape(text)}</p></div>'


def _benchmark_table(scores: list[BenchmarkScore]) -> str:
    table = comparison_table(scores).drop(columns=["protocol_id"])
    return table.round(1).to_html(classes="glan-benchmarks", na_rep="", border=0)


def findings_html(run_dir: str | Path) -> str:
    """The first screen as HTML: the headline, four small figures in a grid and the benchmark table."""
    run_dir = Path(run_dir)
    report, qa, scores = _read_json(run_dir / DATASET / DATASET_REPORT), _qa(run_dir), _scores(run_dir)
    parts = [
        _figure_html(
            _small(coverage(qa), "Coverage: pairs per field / sub-field / discipline", SUNBURST_PX), "coverage"
        )
        if qa is not None and len(qa)
        else _missing("coverage", "Coverage: no exported data set yet (notebook 05)."),
        _figure_html(_removed(report), "removed")
        if report
        else _missing("removed", "Removed by reason: no data set report yet (notebook 05)."),
        _figure_html(_mix(qa), "mix")
        if qa is not None and len(qa)
        else _missing("mix", "Difficulty and question-type mix: no exported data set yet (notebook 05)."),
        _figure_html(_small(benchmark_bars(scores), "Benchmarks, 95% intervals"), "benchmarks")
        if scores
        else _missing("benchmarks", "Benchmarks: no evaluation yet (notebook 07)."),
    ]
    table = _benchmark_table(scores) if scores else ""
    settings = EvalSettings.model_validate(_read_json(run_dir / EVALUATION / "settings.json") or {})
    skipped = "; ".join(f"{name}: {reason}" for name, reason in not_run(settings))
    return (
        '<div class="glan-findings">'
        f'<div class="glan-grid">{"".join(parts)}</div>{table}'
        f'<p class="glan-note">Paper benchmarks not run: {html.escape(skipped or "none")}. Quality and diversity '
        "per discipline: the heat maps in notebook 04's section below.</p></div>"
    )


FINDINGS_CSS = """<style>
.glan-grid { display: grid; grid-template-columns: 1fr 1fr; gap: 4px 12px; }
.glan-grid > :first-child { grid-row: span 3; }  /* the coverage sunburst beside the other three */
.glan-missing { display: flex; align-items: center; justify-content: center; min-height: 120px;
  border: 1px dashed #bbb; color: #666; }
.glan-benchmarks { font-size: 12px; border-collapse: collapse; margin-top: 6px; }
.glan-benchmarks td, .glan-benchmarks th { padding: 1px 6px; border-bottom: 1px solid #eee; text-align: right; }
.glan-note { font-size: 12px; color: #555; }
details.glan-fold { border-top: 1px solid #ddd; padding: 4px 0; }
details.glan-fold > summary { cursor: pointer; font-size: 1.15em; font-weight: 600; padding: 4px 0; }
</style>"""
