"""Figures of the quality stage: a heat map of quality and diversity per node, the verifier agreement, and the
lowest-scoring pairs as a table; each also saved under `outputs/<run>/plots/` (and so shown by the HTML report).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from glan_utils.settings import Settings
from glan_utils.views.plots import save
from glan_utils.views.style import styled

# Heat map columns, each shown so that higher is better (rates of bad things are shown as 1 - rate).
HEAT_COLUMNS: dict[str, tuple[str, bool]] = {
    "mean_score": ("judge score (1-5)", False),
    "flagged_share": ("no rule flag", True),
    "verifier_agreement": ("verifier agreement", False),
    "semantic_near_duplicate_rate": ("semantically distinct", True),
    "lexical_near_duplicate_rate": ("lexically distinct", True),
    "mean_cosine_distance": ("mean cosine distance", False),
    "concept_coverage": ("concept coverage", False),
}


def quality_heatmap(nodes: pd.DataFrame, level: str = "discipline") -> go.Figure:
    """Nodes x metrics, coloured 0..1 (the judge score rescaled from 1..5); the raw value is printed in each cell."""
    present = [c for c in HEAT_COLUMNS if c in nodes]
    labels = [HEAT_COLUMNS[c][0] for c in present]
    shown = pd.DataFrame({c: 1 - nodes[c] if HEAT_COLUMNS[c][1] else nodes[c] for c in present})
    colour = shown.assign(**({"mean_score": (shown["mean_score"] - 1) / 4} if "mean_score" in shown else {}))
    names = nodes[level].astype(str).tolist()
    return go.Figure(
        go.Heatmap(
            z=colour.to_numpy(dtype=float),
            x=labels,
            y=names,
            text=shown.round(2).astype(str).replace({"nan": "", "None": ""}).to_numpy(),
            texttemplate="%{text}",
            zmin=0,
            zmax=1,
            colorscale="RdYlGn",
            colorbar={"title": "better →"},
        ),
        layout={"title": f"Quality and diversity per {level} (green is better)", "height": 200 + 40 * len(names)},
    )


def verifier_bars(nodes: pd.DataFrame, level: str = "discipline") -> go.Figure:
    """Verifier agreement rate per node (closed answers answered twice and compared with sympy)."""
    table = nodes.dropna(subset=["verifier_agreement"]) if "verifier_agreement" in nodes else nodes.iloc[0:0]
    return go.Figure(
        go.Bar(x=table[level] if len(table) else [], y=table["verifier_agreement"] if len(table) else []),
        layout={
            "title": "Verifier agreement on closed final answers",
            "xaxis": {"title": level},
            "yaxis": {"range": [0, 1], "title": "agreement rate"},
        },
    )


def lowest_table(lowest: pd.DataFrame) -> go.Figure:
    """The lowest-scoring pairs with their rationale and flags, as a table figure (for the report): the long text
    columns get most of the width and every cell wraps, so the table is as tall as its text needs."""
    columns = ["discipline", "subject", "score", "flags", "rationale", "question"]
    cells = [lowest[c].map(lambda v: ", ".join(v) if isinstance(v, list) else v).tolist() for c in columns]
    words = sum(len(str(v).split()) for c in ("question", "rationale") for v in lowest[c])
    return go.Figure(
        go.Table(
            columnwidth=[2, 2, 1, 2, 5, 6],
            header={"values": columns, "align": "left", "font": {"size": 13}},
            cells={"values": cells, "align": "left", "height": 28},
        ),
        layout={"title": "Lowest-scoring pairs", "height": 160 + 40 * len(lowest) + 2 * words},
    )


def quality_plots(settings: Settings, nodes: pd.DataFrame, lowest: pd.DataFrame) -> dict[str, go.Figure]:
    """Every quality figure, each saved as `plots/quality_*.html`."""
    figures = {
        "quality_heatmap": quality_heatmap(nodes),
        "quality_verifier": verifier_bars(nodes),
        "quality_lowest": lowest_table(lowest),
    }
    for name, fig in figures.items():
        save(styled(fig), settings, name)
    return figures
