"""One look for every chart of a run and its report: one colour per category value (difficulty, field, discipline,
question type) wherever it is drawn, axes named in words, sunbursts large enough to read, and "no data" written on
an empty chart instead of blank axes.

A value's colour comes from its name (difficulty has fixed colours), so "Physics" or "worked numeric problem" has
the same colour in notebook 04's charts, notebook 05's and the report's first screen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import plotly.express as px
import plotly.graph_objects as go

DIFFICULTY_COLORS = {"basic": "#4C78A8", "challenging": "#E45756"}
PALETTE = px.colors.qualitative.Safe + px.colors.qualitative.Bold
SUNBURST_PX = 600  # a sunburst's height: its labels are readable from ~600 px
# Column names as an axis or legend shows them.
AXIS_LABELS = {
    "pairs": "Q/A pairs",
    "questions": "questions",
    "subjects": "subjects",
    "records": "records",
    "discipline": "discipline",
    "difficulty": "difficulty",
    "question_type": "question type",
    "level": "subject level",
    "sessions_count": "class sessions per syllabus",
    "concepts_used": "key concepts per question",
    "answer_words": "answer length (words)",
    "reason": "reason",
    "value": "share of replies",
    "variable": "outcome",
    "type": "question type",
    "count": "count",
}


def colors(values: Iterable[object]) -> dict[str, str]:
    """A colour for each value, the same in every chart: fixed for difficulty, else picked by the value's name."""
    return {
        str(v): DIFFICULTY_COLORS.get(str(v))
        or PALETTE[int(hashlib.sha256(str(v).encode()).hexdigest(), 16) % len(PALETTE)]
        for v in values
    }


def styled(figure: go.Figure) -> go.Figure:
    """Name the axes and legend in words and write "no data" on a chart with nothing to draw."""
    for axis in ("xaxis", "yaxis"):
        for name in [k for k in figure.layout if k.startswith(axis)]:
            title = figure.layout[name].title.text
            if title in AXIS_LABELS:
                figure.layout[name].title.text = AXIS_LABELS[title]
    legend = figure.layout.legend.title.text
    if legend in AXIS_LABELS:
        figure.layout.legend.title.text = AXIS_LABELS[legend]
    if not any(_points(trace) for trace in figure.data):
        figure.add_annotation(
            text="no data", showarrow=False, font={"size": 18, "color": "#888"}, xref="paper", yref="paper"
        )
        figure.update_xaxes(visible=False).update_yaxes(visible=False)
    return figure


def _points(trace: object) -> int:
    for key in ("x", "y", "values", "z", "labels"):
        data = getattr(trace, key, None)
        if data is not None and len(data):
            return len(data)
    cells = getattr(trace, "cells", None)
    return len(cells.values[0]) if cells is not None and cells.values else 0
