"""A small finished run on disk (no kernel, no model): what `glan report` and `glan status` read."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import plotly.express as px

from glan_utils.core.records import QAPair
from glan_utils.llm.ledger import Ledger
from glan_utils.runs.store import RunStore

CODE_MARKER = "make_the_plot_now"
CARD = "---\nlicense: mit\npretty_name: Tiny GLAN\n---\n# Tiny GLAN data set\n\nTwo *synthetic* pairs.\n"


def _executed_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    plot = nbformat.v4.new_code_cell(f"{CODE_MARKER}()", execution_count=1)
    for fig in (px.bar(x=["a", "b"], y=[1, 2]), px.pie(names=["x", "y"], values=[3, 4])):
        data = {"application/vnd.plotly.v1+json": json.loads(fig.to_json()), "text/plain": "Figure"}
        plot.outputs.append(nbformat.v4.new_output("display_data", data=data))
    table = nbformat.v4.new_code_cell(
        "frame",
        execution_count=2,
        outputs=[
            nbformat.v4.new_output(
                "execute_result",
                data={"text/html": "<table class='dataframe'><tr><td>kept-rows</td></tr></table>"},
                execution_count=2,
            )
        ],
    )
    nb.cells = [nbformat.v4.new_markdown_cell("# 01 · Tiny stage\n\nWhat this stage does."), plot, table]
    return nb


def _pair(i: int) -> QAPair:
    """A valid stored QA pair (estimates read the answers to size the quality stage)."""
    return QAPair(
        question_id=f"q{i}",
        syllabus_id="s",
        subject_id="sub",
        discipline_id="d",
        discipline="Tiny",
        subject="Tiny I",
        level="undergraduate",
        difficulty="basic",
        session_indices=[1],
        concepts=["c"],
        question=f"Question {i}?",
        answer=f"Answer {i}.",
    )


def make_report_run(run_dir: Path) -> Path:
    """A run with config, manifest, ledger (3 calls, 1 failed, 1 cache hit), records, card and notebook."""
    store = RunStore(run_dir)
    store.write_config({"run_name": run_dir.name, "llm": {"model": "fake-model"}})
    store.update_manifest("01_tiny", kind="notebook", status="complete")
    store.update_manifest("answers", status="complete_with_failures", failed=1)
    store.append("answers", [_pair(i) for i in range(2)])
    ledger = Ledger(store.path("ledger.jsonl"))
    for ok, cached in ((True, False), (True, False), (False, False), (True, True)):
        ledger.record(
            stage="answers",
            model="fake-model",
            cache_key="k",
            cached=cached,
            ok=ok,
            prompt_tokens=10,
            completion_tokens=5,
        )
    ledger.close()
    (run_dir / "dataset").mkdir()
    (run_dir / "dataset" / "README.md").write_text(CARD)
    (run_dir / "notebooks").mkdir()
    nbformat.write(_executed_notebook(), run_dir / "notebooks" / "01_tiny.ipynb")
    return run_dir


def make_findings_run(run_dir: Path) -> Path:
    """`make_report_run` plus what the report's first screen reads: a data set report and `qa.parquet`, and
    base/tuned benchmark scores (ARC-Easy under the paper protocol, MMLU under lm-eval's)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from glan_utils.evaluation.harness import BenchmarkScore, save_scores
    from glan_utils.evaluation.stats import wilson_interval

    make_report_run(run_dir)
    rows = [
        {
            "field": field,
            "subfield": f"{field} core",
            "discipline": discipline,
            "subject": f"{discipline} {i % 3}",
            "difficulty": "basic" if i % 3 else "challenging",
            "question": f"{('What', 'How', 'Explain')[i % 3]} is thing {i}?",
            "question_type": ("derivation or proof", "case analysis", "")[i % 3],  # "": exported untyped
        }
        for i, (field, discipline) in enumerate(
            [("Science", "Physics"), ("Science", "Chemistry"), ("Humanities", "History")] * 4
        )
    ]
    pq.write_table(pa.Table.from_pylist(rows), run_dir / "dataset" / "qa.parquet")
    report = {
        "records": 15,
        "exact_duplicates": 1,
        "near_duplicates": 1,
        "contaminated": 1,
        "kept": 12,
        "train": 9,
        "test": 3,
        "benchmarks": {"gsm8k": {"flagged": 1, "removed": 1}},
    }
    (run_dir / "dataset" / "report.json").write_text(json.dumps(report))
    scores = [
        BenchmarkScore(model, bench, "exact_match", value, n, 1.0, protocol, None, *wilson_interval(value, n))
        for model, bench, value, n, protocol in [
            ("base", "arc_easy", 0.5, 20, "paper"),
            ("tuned", "arc_easy", 0.7, 20, "paper"),
            ("base", "mmlu", 0.3, 20, "lm_eval"),
            ("tuned", "mmlu", 0.35, 20, "lm_eval"),
        ]
    ]
    save_scores(scores, run_dir / "evaluation" / "benchmarks.json")
    return run_dir
