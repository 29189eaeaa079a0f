"""What you set is what runs, on every path: one settings file and one set of parameters through plain papermill
(kernel in notebooks/, the repository root, elsewhere), `glan run`, `glan estimate` and preflight give the same
effective values, output_dir, a remote endpoint's per-round count and token budgets included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest
import yaml
from typer.testing import CliRunner

from glan_utils.app import runner
from glan_utils.app.cli import app
from glan_utils.app.preflight import preflight
from glan_utils.settings.config import get_dotted
from glan_utils.settings.notebooks import describe_settings

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "02_subjects.ipynb"
RUN = "paths"
# Notebook 02's parameters by name, and dotted keys for any other setting (`overrides` in a notebook).
NAMED = {"per_round": 2, "top_p": 0.9}
DOTTED = {"answers.max_tokens": 300}
# The values every path must agree on, with what they must be.
EXPECTED = {
    "subjects.per_round": 2,  # set by the user on a remote endpoint: sent as set (the remote default is 40)
    "subjects.top_p": 0.9,
    "subjects.rounds": 3,  # from the settings file
    "answers.max_tokens": 300,  # a dotted key
    "subjects.max_tokens": 6144,  # the remote profile's defaults
    "questions.max_tokens": 2048,
    "questions.max_chars": 8000,
}


@pytest.fixture
def config(openai_server: Any, tmp_path: Path) -> Path:
    """A settings file in its own folder naming a relative output_dir and taxonomy, and a remote endpoint."""
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "tax.yaml").write_text("Sciences:\n  Physical: [Physics, Chemistry]\n")
    settings = {
        "output_dir": "runs",
        "taxonomy.source": "tax.yaml",
        "subjects.rounds": 3,
        "subjects.max_subjects": None,
        "llm.base_url": openai_server.base_url,
        "llm.model": "fake-model",
    }
    path = folder / "settings.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def settings_notebook(folder: Path, snapshot: Path, source: Path = NOTEBOOK) -> Path:
    """A notebook as shipped up to its settings cell, plus a cell that writes the settings it derived."""
    nb = nbformat.read(source, as_version=4)
    last = next(i for i, c in enumerate(nb.cells) if "notebook_settings(" in c.source)
    dump = f"import json, pathlib\npathlib.Path({str(snapshot)!r}).write_text(json.dumps(settings.snapshot()))"
    nb.cells = [*nb.cells[: last + 1], nbformat.v4.new_code_cell(dump)]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / source.name)
    return folder / source.name


def effective(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {key: get_dotted(snapshot, key) for key in ["output_dir", *EXPECTED]}


@pytest.mark.slow  # three kernels and a `glan run` (~60 s)
@pytest.mark.timeout(400)
@pytest.mark.parametrize("kernel_cwd", ["notebooks", "root", "elsewhere"])
def test_plain_papermill_runs_what_the_settings_file_says(config: Path, tmp_path: Path, kernel_cwd: str) -> None:
    cwd = {"notebooks": ROOT / "notebooks", "root": ROOT, "elsewhere": tmp_path}[kernel_cwd]
    snapshot = tmp_path / "snapshot.json"
    notebook = settings_notebook(tmp_path / "nb", snapshot)
    parameters = {"config_path": str(config), "run_name": RUN, **NAMED, "overrides": DOTTED}
    papermill.execute_notebook(
        str(notebook), str(tmp_path / "out.ipynb"), parameters=parameters, kernel_name="python3", cwd=str(cwd)
    )
    assert effective(json.loads(snapshot.read_text())) == {"output_dir": str(config.parent / "runs"), **EXPECTED}


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_glan_run_runs_what_the_settings_file_says(config: Path, tmp_path: Path) -> None:
    snapshot = tmp_path / "snapshot.json"
    folder = settings_notebook(tmp_path / "nb", snapshot).parent
    settings_notebook(folder, tmp_path / "01.json", NOTEBOOK.with_name("01_taxonomy.ipynb"))  # a run from 01 on
    pairs = [arg for key, value in {**NAMED, **DOTTED}.items() for arg in ("-p", key, str(value))]
    glan = str(Path(sys.executable).with_name("glan"))
    command = [glan, "run", RUN, "--config", str(config), *pairs, "--notebooks", str(folder)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    for seen in (snapshot, tmp_path / "01.json"):  # 01 gets 02's `per_round` as subjects.per_round: one run
        assert effective(json.loads(seen.read_text())) == {"output_dir": str(config.parent / "runs"), **EXPECTED}
    assert (config.parent / "runs" / RUN / "notebooks" / NOTEBOOK.name).exists()


def test_preflight_and_estimate_see_the_same_values(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    catalog = runner.discover(ROOT / "notebooks")
    plan = runner.RunPlan(RUN, catalog, config, {**NAMED, **DOTTED}, catalog)
    checked = preflight(plan)
    assert effective(checked.snapshot()) == {"output_dir": str(config.parent / "runs"), **EXPECTED}
    printed = yaml.safe_load(describe_settings(checked, "subjects"))  # what each notebook prints before any call
    assert printed["endpoint"] == "remote" and printed["subjects"]["per_round"] == 2
    assert printed["remote defaults"] == {"subjects.per_round": 40, "subjects.max_tokens": 6144}
    args = [arg for key, value in {**NAMED, **DOTTED}.items() for arg in ("-p", key, str(value))]
    result = CliRunner().invoke(app, ["estimate", "--config", str(config), *args])
    assert result.exit_code == 0, result.output
    rows = [  # figures print with thousands separators
        [c.strip().replace(",", "") for c in line.split("|")[1:-1]]
        for line in result.output.splitlines()
        if line.startswith("| ")
    ]
    table = {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[2:]}
    subjects = table["subjects"]
    calls = 2 * EXPECTED["subjects.rounds"]  # 2 disciplines in the file's taxonomy
    assert (int(subjects["calls"]), int(subjects["outputs"])) == (calls, calls * EXPECTED["subjects.per_round"])
    assert int(subjects["completion_tokens"]) == calls * EXPECTED["subjects.max_tokens"]  # the upper bound
