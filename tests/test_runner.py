"""Batch runs with papermill: stage selection, parameter routing, failures and resume (real kernels)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from browser.notebooks import write_notebooks

from glan_utils.app import runner
from glan_utils.core.errors import ConfigError
from glan_utils.core.records import utc_now
from glan_utils.runs.store import RunStore


@pytest.fixture
def notebooks(tmp_path: Path) -> list[runner.Notebook]:
    return runner.discover(write_notebooks(tmp_path / "nb"))


def test_discover_and_select(notebooks: list[runner.Notebook]) -> None:
    assert [nb.stem for nb in notebooks] == ["01_alpha", "02_beta"]
    assert [nb.stem for nb in runner.select(notebooks, "2")] == ["02_beta"]
    assert [nb.stem for nb in runner.select(notebooks, "alpha", "01_alpha")] == ["01_alpha"]
    assert notebooks[0].parameters == {"run_name", "output_dir", "config_path", "overrides", "n"}
    with pytest.raises(ConfigError, match="unknown stage 'gamma'"):
        runner.select(notebooks, "gamma")
    with pytest.raises(ConfigError, match="comes after"):
        runner.select(notebooks, "2", "1")


def test_unknown_parameter_and_bad_setting_fail_before_running(
    notebooks: list[runner.Notebook], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="unknown parameter 'nn'"):
        runner.RunPlan("r", notebooks, params={"nn": 1}).routed  # noqa: B018
    with pytest.raises(ConfigError, match=r"llm\.modl"):
        runner.RunPlan("r", notebooks, params={"llm.modl": "x"}).settings  # noqa: B018
    plan = runner.RunPlan("r", notebooks, params={"n": 3, "seed": 7, "output_dir": str(tmp_path / "o")})
    assert plan.routed == ({"n": 3, "output_dir": str(tmp_path / "o")}, {"seed": 7})


def test_run_fail_then_resume(notebooks: list[runner.Notebook], tmp_path: Path) -> None:
    params = {"output_dir": str(tmp_path / "outputs"), "n": 5, "seed": 7, "fail": True}
    plan = runner.RunPlan("r1", notebooks, params=params)
    with pytest.raises(runner.StageFailed, match="02_beta failed: AssertionError: beta was told to fail"):
        runner.execute(plan, echo=lambda _: None)
    run_dir = tmp_path / "outputs" / "r1"
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert (stages["01_alpha"]["status"], stages["02_beta"]["status"]) == ("complete", "failed")
    assert (run_dir / "alpha.log").read_text() == "5 7\n", "n reached the notebook, seed went via overrides"

    resumed = runner.RunPlan("r1", notebooks, params={**params, "fail": False})
    executed = runner.execute(resumed, resume=True, echo=lambda _: None)
    assert [p.name for p in executed] == ["01_alpha.ipynb", "02_beta.ipynb"]
    assert all(p.exists() for p in executed)
    assert (run_dir / "alpha.log").read_text() == "5 7\n", "the complete stage was skipped"
    assert (run_dir / "beta.log").read_text() == "7\n", "seed reached a notebook without overrides"
    saved = runner.saved_invocation(run_dir)
    assert saved is not None and saved.params["fail"] is False
    assert (saved.start, saved.stop) == ("01_alpha", "02_beta"), "the stage range is kept for --resume"


def test_settings_file_seed_beats_a_notebook_default(tmp_path: Path) -> None:
    """A notebook declaring `seed = 0` must still run with the settings file's seed (and language)."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('run_name = "demo"\nseed = 0\nlanguage = "English"\nconfig_path = None')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "01_seeded.ipynb")
    config = tmp_path / "settings.yaml"
    config.write_text(f"output_dir: {tmp_path / 'o'}\nseed: 11\nlanguage: French\n")
    notebooks = runner.discover(tmp_path)
    params = runner.RunPlan("r", notebooks, config).parameters_for(notebooks[0])
    assert (params["seed"], params["language"]) == (11, "French")
    given = runner.RunPlan("r", notebooks, config, {"seed": 41}).parameters_for(notebooks[0])
    assert given["seed"] == 41, "an explicit -p seed still wins"


def test_resume_reruns_a_complete_notebook_whose_inputs_changed(
    notebooks: list[runner.Notebook], tmp_path: Path
) -> None:
    plan = runner.RunPlan("r2", notebooks, params={"output_dir": str(tmp_path / "outputs"), "n": 5, "fail": False})
    runner.execute(plan, echo=lambda _: None)
    store = RunStore(tmp_path / "outputs" / "r2")
    wiring = {"notebook": "01_alpha", "needs": None, "parts": []}  # as pipeline.run records a stage of 01
    store.update_manifest("taxonomy", status="complete", started_at=utc_now().isoformat(), **wiring)
    store.records_path("taxonomy").write_text('{"id": "t"}\n')  # 01's records changed after 02_beta ran
    said: list[str] = []
    runner.execute(plan, resume=True, echo=said.append)
    assert "01_alpha: complete, skipped" in said
    assert "02_beta: stale (taxonomy changed since it ran), running again" in said
    assert "02_beta: complete, skipped" not in said
