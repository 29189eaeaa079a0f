"""Evaluation views: measured scores with n and 95% intervals beside the paper's numbers, and the loss-gap check.

Published numbers are the GLAN paper's Table 1 (GLAN-7B vs Mistral-7B, percentages) and GLAN's IFEval scores;
they are labelled `(paper)`, never mixed with this run's measured numbers, and shown only for a benchmark that ran
under the paper's protocol (0-shot, generated answers): beside a log-likelihood or few-shot score they would
compare two different measurements."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from glan_utils.evaluation.harness import BenchmarkScore, not_run
from glan_utils.evaluation.stats import difference_p_value, paired_p_value
from glan_utils.settings.benchmarks import BY_NAME, CATALOG
from glan_utils.settings.evaluation import EvalSettings
from glan_utils.views.plots import save_figure

# The paper's numbers by model and reported label, from the catalog.
PUBLISHED: dict[str, dict[str, float]] = {
    model: {label: value for b in CATALOG for label, value in b.published.get(model, {}).items()}
    for model in dict.fromkeys(model for b in CATALOG for model in b.published)
}


def score_frame(scores: Sequence[BenchmarkScore]) -> pd.DataFrame:
    """One row per model x benchmark metric: score, n, 95% interval (all in %) and the protocol in words."""
    return pd.DataFrame(
        [
            {
                "benchmark": s.benchmark,
                "model": s.model,
                "protocol": s.protocol,
                "protocol_note": s.protocol_note,
                "n": s.n,
                "score": 100 * s.value,
                "ci_low": 100 * s.ci_low if s.ci_low is not None else None,
                "ci_high": 100 * s.ci_high if s.ci_high is not None else None,
            }
            for s in scores
        ],
        columns=["benchmark", "model", "protocol", "protocol_note", "n", "score", "ci_low", "ci_high"],
    )


def _interval(row: pd.Series) -> str:
    return f"{row.ci_low:.0f}–{row.ci_high:.0f}" if pd.notna(row.ci_low) else ""


def _significance(scores: Sequence[BenchmarkScore], base: str, other: str) -> pd.DataFrame:
    """Per benchmark: other − base in points, a two-sided p-value, which test gave it, and whether p < 0.05.

    With both models' per-item scores (lm-eval's logged samples) the test is McNemar's, paired over the items both
    answered; without them (scores saved by an older run) only Fisher's unpaired test on the two proportions is
    possible, and the table says so."""
    others = {s.benchmark: s for s in scores if s.model == other}
    rows = {}
    for a in (s for s in scores if s.model == base and s.benchmark in others):
        benchmark, b = a.benchmark, others[a.benchmark]
        if a.items and b.items:
            p, shared = paired_p_value(a.items, b.items)
            test = f"McNemar, paired over {shared} items"
        else:
            p, test = difference_p_value(a.value, a.n, b.value, b.n), "Fisher, unpaired"
        rows[benchmark] = {
            f"{other} − {base} (pts)": 100 * (b.value - a.value),
            f"p ({other} vs {base})": p,
            f"test ({other} vs {base})": test,
            f"{other} vs {base} significant": "yes (p < 0.05)" if p < 0.05 else "no",
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def comparison_table(scores: Sequence[BenchmarkScore]) -> pd.DataFrame:
    """Benchmarks as rows: protocol, n, each model's score (%) and 95% interval, the difference of every other
    model from the first one (base) with its significance, and the paper's published numbers — these only where
    the benchmark ran under the paper's protocol, since a number under another protocol is not comparable."""
    frame = score_frame(scores)
    if frame.empty:
        return pd.DataFrame(columns=["protocol", "n"])
    frame = frame.assign(interval=frame.apply(_interval, axis=1))
    table = frame.groupby("benchmark", sort=False).agg(protocol=("protocol_note", "first"), n=("n", "max"))
    table.insert(0, "protocol_id", frame.groupby("benchmark", sort=False)["protocol"].first())
    models = list(dict.fromkeys(frame.model))
    for model in models:
        mine = frame[frame.model == model].set_index("benchmark")
        table[f"{model} (%)"] = mine["score"]
        table[f"{model} 95% CI"] = mine["interval"]
    for other in models[1:]:
        table = table.join(_significance(scores, models[0], other))
    for name, numbers in PUBLISHED.items():
        published = pd.Series(numbers).reindex(table.index)
        table[f"{name} (paper)"] = published.where(table.protocol_id == "paper")
    return table


def benchmark_bars(scores: Sequence[BenchmarkScore]) -> go.Figure:
    """Grouped bars per benchmark with 95% error bars; the paper's bars only where the protocol is the paper's.

    Each x label names the protocol and n, so a 100% from two items reads as what it is."""
    frame = score_frame(scores)
    if frame.empty:
        return go.Figure().update_layout(title="Benchmarks: nothing measured yet")
    frame = frame.assign(label=frame.benchmark + "<br>" + frame.protocol + ", n=" + frame.n.astype(str))
    labels = frame.drop_duplicates("benchmark").set_index("benchmark")
    figure = go.Figure()
    for model, mine in frame.groupby("model", sort=False):
        figure.add_bar(
            x=mine.label,
            y=mine.score,
            name=f"{model} (measured)",
            error_y={**_error_bars(mine, "score"), "visible": True},
            customdata=mine[["ci_low", "ci_high", "n"]],
            hovertemplate="%{y:.1f}% [%{customdata[0]:.1f}, %{customdata[1]:.1f}], n=%{customdata[2]}",
        )
    paper = labels[labels.protocol == "paper"]
    for name, numbers in PUBLISHED.items():
        shown = [b for b in paper.index if b in numbers]
        if shown:
            figure.add_bar(
                x=paper.loc[shown, "label"], y=[numbers[b] for b in shown], name=f"{name} (paper)", opacity=0.45
            )
    return figure.update_layout(
        barmode="group",
        title="Benchmarks with 95% intervals; paper numbers only under the paper protocol",
        yaxis={"title": "score (%)", "range": [0, 105]},
    )


def benchmark_radar(table: pd.DataFrame) -> go.Figure:
    """Radar of measured scores (%) over the benchmarks every model has a number for."""
    columns = [c for c in table.columns if c.endswith(" (%)")]
    shared = table[columns].dropna().astype(float)
    figure = go.Figure(
        [
            go.Scatterpolar(
                r=shared[c].tolist() + shared[c].tolist()[:1],
                theta=shared.index.tolist() + shared.index.tolist()[:1],
                name=c.removesuffix(" (%)"),
            )
            for c in columns
        ]
    )
    return figure.update_layout(
        title="Benchmarks present for all models (%, measured)", polar={"radialaxis": {"range": [0, 100]}}
    )


def discipline_heatmap(summary: pd.DataFrame) -> go.Figure:
    """GLAN-Test, reference view: mean judge score per discipline (rows) and model (columns), each answer graded
    against the generator's unverified answer."""
    grid = summary.pivot(index="discipline", columns="model", values="score")
    return px.imshow(
        grid,
        text_auto=".1f",
        zmin=1,
        zmax=10,
        color_continuous_scale="Viridis",
        aspect="auto",
        title="GLAN-Test, reference view: mean judge score (1-10) vs the generator's answer",
    )


def loss_gap_plot(gaps: pd.DataFrame) -> go.Figure:
    """Δ% per benchmark and model with its 95% bootstrap interval; the form (train or validation reference) and
    the sizes are in each x label, so a validation-form number is never read as the paper's train form."""
    measured = gaps.dropna(subset=["delta_pct"])
    labels = measured.benchmark + "<br>" + measured.form + ", n=" + measured.n_test.astype(int).astype(str)
    figure = go.Figure()
    for model, mine in measured.assign(label=labels).groupby("model", sort=False):
        figure.add_bar(
            x=mine.label,
            y=mine.delta_pct,
            name=model,
            error_y=_error_bars(mine, "delta_pct"),
        )
    return figure.update_layout(
        barmode="group",
        title="Loss gap Δ% = (L_test − L_ref) / L_test with 95% bootstrap intervals",
        yaxis={"title": "Δ% (an interval spanning 0 is no signal)"},
    )


def _error_bars(frame: pd.DataFrame, value: str) -> dict[str, object]:
    """Plotly error bars from a frame's `ci_low`/`ci_high` around its `value` column."""
    return {"type": "data", "array": frame.ci_high - frame[value], "arrayminus": frame[value] - frame.ci_low}


def protocol_table(settings: EvalSettings) -> pd.DataFrame:
    """The protocol each configured benchmark runs under, in words, and whether the paper's number is shown:
    the notebook displays it so every deviation from the paper's protocol is on the page."""
    rows = []
    for benchmark in settings.benchmarks:
        protocol = settings.protocol_of(benchmark)
        rows.append(
            {
                "benchmark": benchmark,
                "protocol": protocol,
                "what": BY_NAME[benchmark].protocols[protocol].note,
                "paper number shown": "yes" if protocol == "paper" and BY_NAME[benchmark].published else "no",
            }
        )
    return pd.DataFrame(rows).set_index("benchmark")


def not_run_table(settings: EvalSettings) -> pd.DataFrame:
    """The paper's benchmarks this configuration does not score, each with its reason, so none is left out of the
    page silently (the Evol-Instruct test set has no offline source; BBH needs a local copy)."""
    return pd.DataFrame(not_run(settings), columns=["benchmark", "not run because"]).set_index("benchmark")


def pairwise_plot(summary: pd.DataFrame) -> go.Figure:
    """GLAN-Test the paper's way: per discipline, the judge's score difference (second − first model, 1-10 scale,
    both orders averaged) with its 95% bootstrap interval; a bar whose interval spans 0 is no difference."""
    figure = go.Figure()
    for pair, mine in summary.groupby("pair", sort=False):
        figure.add_bar(
            x=mine.discipline + " (n=" + mine.n.astype(str) + ")",
            y=mine.difference,
            name=pair,
            error_y=_error_bars(mine, "difference"),
        )
    return figure.update_layout(
        barmode="group",
        title="GLAN-Test pairwise: score difference per discipline (both orders), 95% intervals",
        yaxis={"title": "Δ judge score (1-10 scale)"},
    )


def glan_test_figures(summaries: dict[str, pd.DataFrame], plots: Path) -> dict[str, go.Figure]:
    """The GLAN-Test figures the summaries allow (pairwise first, the reference view second), each saved."""
    figures = {}
    if "pairwise_by_discipline" in summaries and len(summaries["pairwise_by_discipline"]):
        figures["glan_test_pairwise"] = pairwise_plot(summaries["pairwise_by_discipline"])
    if "reference_by_discipline" in summaries and len(summaries["reference_by_discipline"]):
        figures["glan_test_heatmap"] = discipline_heatmap(summaries["reference_by_discipline"])
    for name, figure in figures.items():
        save_figure(figure, plots / f"{name}.html")
    return figures
