"""Evaluation report: measured scores beside the paper's published numbers, plots, and the loss-gap check.

Published numbers are the GLAN paper's Table 1 (GLAN-7B vs Mistral-7B, percentages) and GLAN's IFEval scores;
they are labelled `published` and never mixed with this run's `measured` numbers, which come from small
samples."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from glan_utils.data.benchmarks import iter_items
from glan_utils.evaluation.harness import BenchmarkScore

PUBLISHED: dict[str, dict[str, float]] = {
    "Mistral-7B": {
        "humaneval": 28.0,
        "mbpp": 50.2,
        "gsm8k": 43.4,
        "math": 10.0,
        "bbh": 56.1,
        "arc_easy": 79.5,
        "arc_challenge": 53.9,
        "mmlu": 62.3,
    },
    "GLAN-7B": {
        "humaneval": 48.8,
        "mbpp": 57.6,
        "gsm8k": 80.8,
        "math": 32.7,
        "bbh": 60.7,
        "arc_easy": 90.7,
        "arc_challenge": 81.1,
        "mmlu": 62.9,
        "ifeval_prompt_strict": 34.0,
        "ifeval_inst_strict": 44.8,
        "ifeval_prompt_loose": 41.2,
        "ifeval_inst_loose": 51.6,
    },
}


def comparison_table(scores: Sequence[BenchmarkScore]) -> pd.DataFrame:
    """Benchmarks as rows; published columns, one measured column per model (%), and sample sizes."""
    published = pd.DataFrame(PUBLISHED).rename(columns=lambda name: f"{name} (published)")
    measured = pd.DataFrame(
        [{"benchmark": s.benchmark, "model": f"{s.model} (measured)", "value": 100 * s.value, "n": s.n} for s in scores]
    )
    if measured.empty:
        return published
    values = measured.pivot_table(index="benchmark", columns="model", values="value", sort=False)
    sizes = measured.groupby("benchmark", sort=False)["n"].max().rename("n (measured items)")
    return published.join(values, how="outer").join(sizes).reindex(values.index.union(published.index, sort=False))


def benchmark_bars(table: pd.DataFrame) -> go.Figure:
    """Grouped bars per benchmark: published and measured scores side by side."""
    long = table.drop(columns=[c for c in table.columns if c.startswith("n ")]).reset_index(names="benchmark")
    long = long.melt(id_vars="benchmark", var_name="model", value_name="score").dropna()
    return px.bar(
        long,
        x="benchmark",
        y="score",
        color="model",
        barmode="group",
        title="Benchmarks: published (paper) vs measured (this run, small sample)",
        labels={"score": "score (%)"},
    )


def benchmark_radar(table: pd.DataFrame) -> go.Figure:
    """Radar over the benchmarks every model has a number for."""
    columns = [c for c in table.columns if not c.startswith("n ")]
    shared = table[columns].dropna()
    figure = go.Figure(
        [
            go.Scatterpolar(
                r=shared[c].tolist() + shared[c].tolist()[:1],
                theta=shared.index.tolist() + shared.index.tolist()[:1],
                name=c,
            )
            for c in columns
        ]
    )
    return figure.update_layout(
        title="Benchmarks present for all models (%)", polar={"radialaxis": {"range": [0, 100]}}
    )


def discipline_heatmap(summary: pd.DataFrame) -> go.Figure:
    """GLAN-Test mean judge score per discipline (rows) and model (columns)."""
    grid = summary.pivot(index="discipline", columns="model", values="score")
    return px.imshow(
        grid,
        text_auto=".1f",
        zmin=1,
        zmax=10,
        color_continuous_scale="Viridis",
        aspect="auto",
        title="GLAN-Test: mean judge score (1-10) per discipline",
    )


def save_figure(figure: go.Figure, path: Path) -> Path:
    """Write a figure as standalone HTML (plotly.js inlined, so it opens offline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.write_html(path, include_plotlyjs=True)
    return path


def loss_gaps(model: Any, tokenizer: Any, limit: int = 20) -> pd.DataFrame:
    """The paper's contamination check, Δ% = (L_test − L_train) / L_test, per benchmark with a held-out split.

    Benchmark train sets are not shipped offline, so the reference split is the closest one that is (ARC
    validation, MMLU dev+validation). Uses `glan_utils.train.sft.loss_gap`; empty if that module is absent.
    """
    try:
        check = importlib.import_module("glan_utils.train.sft").loss_gap
    except (ImportError, AttributeError):
        return pd.DataFrame(columns=["benchmark", "reference_split", "delta_pct"])
    rows = []
    for name, reference in (
        ("arc_easy", "validation"),
        ("arc_challenge", "validation"),
        ("mmlu", "validation"),
    ):
        texts = {
            split: [f"{item.text}\n{item.answer}" for item in iter_items(name, split, limit)]
            for split in (reference, "test")
        }
        delta = check(model, tokenizer, texts[reference], texts["test"])
        rows.append({"benchmark": name, "reference_split": reference, "delta_pct": 100 * delta})
    return pd.DataFrame(rows)
