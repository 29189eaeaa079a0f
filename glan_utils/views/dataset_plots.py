"""Plotly figures of the data set step: what was removed and why, final counts per discipline, text lengths.

Lengths are binned while streaming `qa.parquet` in batches, so a plot of millions of records stays small.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import pyarrow.compute as pc
import pyarrow.parquet as pq

from glan_utils.core.paths import QA_TABLE
from glan_utils.data.build import DatasetReport


def removal_table(report: DatasetReport) -> pd.DataFrame:
    """Records removed per reason (exact / near duplicate, one row per benchmark) and kept."""
    rows = [("exact duplicate", report.exact_duplicates), ("near duplicate", report.near_duplicates)]
    rows += [(f"contaminated: {name}", figures["removed"]) for name, figures in report.benchmarks.items()]
    rows.append(("kept", report.kept))
    return pd.DataFrame(rows, columns=["reason", "records"])


def removed_by_reason(report: DatasetReport) -> go.Figure:
    table = removal_table(report)
    table = table[table["reason"] != "kept"]
    return px.bar(
        table, x="reason", y="records", title=f"Removed records ({report.records:,} in, {report.kept:,} kept)"
    )


def per_discipline(report: DatasetReport) -> go.Figure:
    """Final records per discipline, stacked by split and difficulty."""
    counts = pd.DataFrame(report.counts)
    counts["split / difficulty"] = counts["split"] + " / " + counts["difficulty"]
    return px.bar(counts, x="discipline", y="records", color="split / difficulty", title="Final records per discipline")


def length_histograms(qa_path: Path, bins: int = 40, batch_size: int = 50_000) -> go.Figure:
    """Word counts of kept questions and answers, binned on a shared log-spaced scale."""
    edges = np.unique(np.geomspace(1, 10_000, bins + 1).round())
    totals = {"question": np.zeros(len(edges) - 1, np.int64), "answer": np.zeros(len(edges) - 1, np.int64)}
    for batch in pq.ParquetFile(qa_path).iter_batches(batch_size=batch_size, columns=list(totals)):
        for name, total in totals.items():
            words = pc.list_value_length(pc.utf8_split_whitespace(batch[name])).to_numpy(zero_copy_only=False)
            total += np.histogram(words, edges)[0]
    figure = go.Figure([go.Bar(x=edges[:-1], y=total, name=name, opacity=0.7) for name, total in totals.items()])
    figure.update_layout(
        barmode="overlay",
        title="Length of kept questions and answers",
        yaxis_title="records",
        xaxis={"title": "words (bin start)", "type": "log"},
    )
    return figure


def dataset_figures(report: DatasetReport) -> dict[str, go.Figure]:
    """All figures of the step, keyed by file stem."""
    return {
        "dataset_removed": removed_by_reason(report),
        "dataset_disciplines": per_discipline(report),
        "dataset_lengths": length_histograms(Path(report.dataset_dir) / QA_TABLE),
    }
