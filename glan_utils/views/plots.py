"""Plotly figures of a generation run, each also saved as HTML under `outputs/<run>/plots/`.

Coverage (field -> sub-field -> discipline -> subject, sized by Q/A pairs), pairs per discipline against the
planned target, basic vs challenging per discipline, subject levels, concepts per question and answer lengths.
Each function takes DataFrames, so a notebook can plot a filtered slice; `save` writes the figure next to one
shared plotly.js.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from glan_utils.core.paths import PLOTS
from glan_utils.settings import Settings
from glan_utils.views.style import SUNBURST_PX, colors, styled


def plots_dir(settings: Settings) -> Path:
    return settings.run_dir / PLOTS


def save_figure(figure: go.Figure, path: Path) -> Path:
    """Write a figure as standalone HTML that opens offline; plotly.js is copied once into the folder beside it,
    not inlined into every file (the HTML report inlines it once for the whole page)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.write_html(path, include_plotlyjs="directory")
    return path


def save_figures(figures: dict[str, go.Figure], plot_dir: Path) -> list[Path]:
    """`save_figure` for each figure, as `<plot_dir>/<name>.html`."""
    return [save_figure(figure, plot_dir / f"{name}.html") for name, figure in figures.items()]


def save(fig: go.Figure, settings: Settings, name: str) -> Path:
    """Write the run's `plots/<name>.html`."""
    return save_figure(fig, plots_dir(settings) / f"{name}.html")


def _colored(plot: Callable[..., go.Figure], frame: pd.DataFrame, color: str, **kwargs: Any) -> go.Figure:
    """`plot(frame, color=color, ...)` with the colour each value of `color` has in every chart (`style.colors`)."""
    return plot(frame, color=color, color_discrete_map=colors(frame[color].unique()), **kwargs)


def coverage(qa: pd.DataFrame) -> go.Figure:
    """Sunburst field -> sub-field -> discipline -> subject, each wedge sized by its Q/A pairs."""
    counts = qa.groupby(["field", "subfield", "discipline", "subject"]).size().reset_index(name="pairs")
    return _colored(
        px.sunburst,
        counts,
        "field",
        path=["field", "subfield", "discipline", "subject"],
        values="pairs",
        height=SUNBURST_PX,
        title="Coverage: Q/A pairs by field, sub-field, discipline and subject",
    )


def taxonomy_sunburst(nodes: pd.DataFrame) -> go.Figure:
    """The kept taxonomy: one wedge per discipline under its sub-field and field."""
    leaves = nodes[nodes["level"] == "discipline"]
    table = pd.DataFrame(leaves["path"].tolist(), columns=["field", "subfield", "discipline"]).assign(n=1)
    return _colored(
        px.sunburst,
        table,
        "field",
        path=["field", "subfield", "discipline"],
        values="n",
        height=SUNBURST_PX,
        title="Kept taxonomy",
    )


def sessions_per_syllabus(syllabi: pd.DataFrame) -> go.Figure:
    table = syllabi.assign(sessions_count=syllabi["sessions"].map(len))
    return _colored(
        px.histogram,
        table,
        "discipline",
        x="sessions_count",
        title="Class sessions per syllabus",
    )


def pairs_vs_target(qa: pd.DataFrame, syllabi: pd.DataFrame, per_syllabus: int) -> go.Figure:
    """Pairs per discipline next to the target (syllabi x questions per syllabus): where failures bit."""
    made = qa.groupby("discipline").size().rename("pairs")
    target = (syllabi.groupby("discipline").size() * per_syllabus).rename("target")
    table = pd.concat([made, target], axis=1).fillna(0).reset_index(names="discipline")
    return px.bar(
        table,
        x="discipline",
        y=["pairs", "target"],
        barmode="group",
        labels={"value": "Q/A pairs", "variable": ""},
        title="Q/A pairs per discipline vs target",
    )


def difficulty_mix(qa: pd.DataFrame) -> go.Figure:
    counts = qa.groupby(["discipline", "difficulty"]).size().reset_index(name="pairs")
    return _colored(
        px.bar,
        counts,
        "difficulty",
        x="discipline",
        y="pairs",
        title="Basic vs challenging per discipline",
    )


def subject_levels(subjects: pd.DataFrame) -> go.Figure:
    counts = subjects.groupby(["level", "discipline"]).size().reset_index(name="subjects")
    return _colored(
        px.bar,
        counts,
        "discipline",
        x="level",
        y="subjects",
        title="Subjects by level",
    )


def concepts_per_question(questions: pd.DataFrame) -> go.Figure:
    table = questions.assign(concepts_used=questions["concepts"].map(len))
    return _colored(
        px.histogram,
        table,
        "difficulty",
        x="concepts_used",
        barmode="group",
        title="Key concepts per question (basic 1-5, challenging 2-5)",
    )


def question_types(questions: pd.DataFrame) -> go.Figure:
    """The mix of drawn question types (worked problem, proof, code, ...) by difficulty."""
    kinds = questions.assign(question_type=questions.get("question_type", "").replace("", "untyped"))
    counts = kinds.groupby(["question_type", "difficulty"]).size().reset_index(name="questions")
    return _colored(
        px.bar,
        counts,
        "difficulty",
        x="question_type",
        y="questions",
        title="Question types",
    )


def truncation(table: pd.DataFrame) -> go.Figure:
    """Share of replies cut at their budget (rescued by the retry, or failed) per stage and difficulty."""
    long = table.melt(id_vars=["stage", "difficulty"], value_vars=["truncation_rate", "failure_rate"])
    return px.bar(
        long,
        x="difficulty",
        y="value",
        color="variable",
        barmode="group",
        facet_col="stage",
        title="Replies cut at max_tokens, by difficulty",
    )


def answer_lengths(qa: pd.DataFrame) -> go.Figure:
    table = qa.assign(answer_words=qa["answer"].str.split().map(len))
    return _colored(
        px.histogram,
        table,
        "difficulty",
        x="answer_words",
        nbins=40,
        title="Answer length (words)",
    )


def generation_plots(settings: Settings, frames: dict[str, pd.DataFrame]) -> dict[str, go.Figure]:
    """Every figure the given frames allow (keys: subjects, syllabi, questions, answers); each is saved."""
    figures: dict[str, go.Figure] = {}
    subjects, syllabi = frames.get("subjects"), frames.get("syllabi")
    questions, qa = frames.get("questions"), frames.get("answers")
    if subjects is not None and len(subjects):
        figures["subject_levels"] = subject_levels(subjects)
    if syllabi is not None and len(syllabi):
        figures["sessions_per_syllabus"] = sessions_per_syllabus(syllabi)
    if questions is not None and len(questions):
        figures["concepts_per_question"] = concepts_per_question(questions)
    if qa is not None and len(qa):
        figures["coverage"] = coverage(qa)
        figures["difficulty_mix"] = difficulty_mix(qa)
        figures["answer_lengths"] = answer_lengths(qa)
        if syllabi is not None and len(syllabi):
            figures["pairs_vs_target"] = pairs_vs_target(qa, syllabi, settings.questions.questions_per_syllabus)
    for name, fig in figures.items():
        save(styled(fig), settings, name)
    return figures
