"""Notebook 06's figures: training and eval loss, and tokens seen, per optimizer step."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go


def training_figures(history: list[dict[str, Any]], preset: str) -> dict[str, go.Figure]:
    """`finetune_loss` (train and eval loss, responses only) and `finetune_tokens` from a run's log history."""
    frame = pd.DataFrame(history)
    figures: dict[str, go.Figure] = {}
    curves = [c for c in ("loss", "eval_loss") if c in frame]
    if curves:
        losses = frame.melt(id_vars="step", value_vars=curves).dropna()
        figures["finetune_loss"] = px.line(
            losses,
            x="step",
            y="value",
            color="variable",
            markers=True,
            title=f"{preset}: training and eval loss (responses only)",
        )
    if "num_tokens" in frame:
        figures["finetune_tokens"] = px.line(
            frame.dropna(subset=["num_tokens"]), x="step", y="num_tokens", markers=True, title=f"{preset}: tokens seen"
        )
    return figures
