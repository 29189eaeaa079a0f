"""The `glan` command: one-line user errors with exit code 2, status, estimate, report and sweep files."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from browser.notebooks import write_notebooks
from browser.runs import make_report_run
from typer.testing import CliRunner

from glan_utils.app.cli import app
from glan_utils.app.index import INDEX_FILE, index_path, remember
from glan_utils.app.sweep import comparison, load_sweep
from glan_utils.core.errors import ConfigError
from glan_utils.runs.store import RunStore

cli = CliRunner()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GLAN_CACHE_DIR", str(tmp_path / "cache"))  # the run index stays in the test
    write_notebooks(tmp_path / "notebooks")
    make_report_run(tmp_path / "outputs" / "demo")
    return tmp_path


def _one_line_error(result, needle: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().count("\n") == 0 and needle in result.stderr


def test_unknown_parameter_is_one_line_exit_2(project: Path) -> None:
    _one_line_error(cli.invoke(app, ["run", "x", "-p", "nope", "1"]), "unknown parameter 'nope'")
    _one_line_error(cli.invoke(app, ["run", "x", "--from", "9"]), "unknown stage '9'")
    _one_line_error(cli.invoke(app, ["run", "x", "-p", "llm.concurrency", "0"]), "llm.concurrency")
    assert not (project / "outputs" / "x").exists(), "nothing runs when a parameter is wrong"


def test_status_lists_stages_pending_notebooks_and_cost(project: Path) -> None:
    result = cli.invoke(app, ["status", "demo"])
    assert result.exit_code == 0, result.output
    assert "complete_with_failures" in result.output
    assert "| 01_alpha" in result.output and "pending" in result.output
    assert "total: 3 model calls, 1 cache hits, 1 failed" in result.output
    _one_line_error(cli.invoke(app, ["status", "ghost"]), "no such run")


def test_report_command_writes_html(project: Path) -> None:
    result = cli.invoke(app, ["report", "demo", "--out", "r.html"])
    assert result.exit_code == 0, result.output
    assert (project / "r.html").read_text().count("Plotly.newPlot") == 2


def test_estimate_per_stage(project: Path) -> None:
    result = cli.invoke(app, ["estimate", "-p", "taxonomy.n_fields", "1", "-p", "subjects.rounds", "3"])
    assert result.exit_code == 0, result.output
    for stage in ("taxonomy", "subjects", "syllabi", "questions", "answers"):
        assert f"| {stage}" in result.output
    _one_line_error(cli.invoke(app, ["estimate", "-p", "subjects.roundz", "3"]), "subjects.roundz")


def test_sweep_file_list_and_grid(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "params: {n: 1}\nruns:\n  - {name: small, params: {seed: 1}}\n"
        "grid:\n  llm.temperature: [0.1, 0.9]\n  seed: [2]\n"
    )
    runs = load_sweep(sweep, "base")
    assert [r.name for r in runs] == ["base-small", "base-temperature_0.1-seed_2", "base-temperature_0.9-seed_2"]
    assert runs[2].params == {"n": 1, "llm.temperature": 0.9, "seed": 2}
    sweep.write_text("grid: {seed: 3}\n")
    with pytest.raises(ConfigError, match="non-empty list"):
        load_sweep(sweep, "base")


def test_sweep_comparison_table(project: Path) -> None:
    sweep = project / "s.yaml"
    sweep.write_text("- {n: 1}\n- {n: 2}\n")
    runs = load_sweep(sweep, "demo")
    assert [r.name for r in runs] == ["demo-n_1", "demo-n_2"]
    (project / "outputs" / "demo").rename(project / "outputs" / "demo-n_1")
    table = comparison(runs, project / "outputs", {"demo-n_2": "02_beta failed"}, {"demo-n_1": 1.25})
    table = table.set_index("run")
    assert table.loc["demo-n_1", "answers_records"] == 2 and table.loc["demo-n_1", "calls"] == 3
    assert table.loc["demo-n_1", "wall_s"] == 1.2 and table.loc["demo-n_1", "cached"] == "some"
    assert table.loc["demo-n_2", "outcome"] == "02_beta failed"


def test_run_sweep_executes_each_run_and_compares(project: Path) -> None:
    (project / "s.yaml").write_text("grid: {n: [3, 4]}\n")
    result = cli.invoke(app, ["run", "sw", "--sweep", "s.yaml", "--to", "alpha"])
    assert result.exit_code == 0, result.output
    for n in (3, 4):
        assert (project / "outputs" / f"sw-n_{n}" / "alpha.log").read_text() == f"{n} 0\n"
        assert (project / "outputs" / f"sw-n_{n}" / "notebooks" / "01_alpha.ipynb").exists()
    assert "| sw-n_3" in result.output and (project / "outputs" / "sw-sweep.csv").exists()
    assert "sweep 'sw': 2 runs (0 failed) in " in result.output.splitlines()[-1]
    assert result.output.count("run 'sw-n_") == 2, "a closing line per run"


def test_status_never_calls_a_dead_process_running(project: Path) -> None:
    store = RunStore(project / "outputs" / "demo")
    store.update_manifest("02_beta", kind="notebook", status="running")
    store.update_manifest("questions", status="running")
    assert store.read_manifest()["stages"]["questions"]["pid"] == os.getpid()
    gone = _dead_pid()
    manifest = json.loads(store.path("manifest.json").read_text())
    manifest["stages"]["02_beta"]["pid"] = gone
    store.path("manifest.json").write_text(json.dumps(manifest))
    result = cli.invoke(app, ["status", "demo"])
    assert result.exit_code == 0, result.output
    assert "| 02_beta   | interrupted (process gone)" in result.output
    assert "| questions | running" in result.output, "this test process is alive"


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_status_and_report_find_a_run_through_the_index(project: Path, tmp_path: Path) -> None:
    far = tmp_path / "far" / "outputs"
    far.mkdir(parents=True)
    (project / "outputs" / "demo").rename(far / "demo")
    _one_line_error(cli.invoke(app, ["status", "demo"]), "run index")
    remember("demo", far / "demo", None)
    assert cli.invoke(app, ["status", "demo"]).exit_code == 0
    assert cli.invoke(app, ["report", "demo"]).exit_code == 0 and (far / "demo" / "report.html").exists()


def test_resume_of_an_unknown_run_is_one_line_naming_where_it_looked(project: Path) -> None:
    result = cli.invoke(app, ["run", "ghost", "--resume"])
    _one_line_error(result, "nothing to resume for run 'ghost'")
    assert str(project / "outputs" / "ghost") in result.stderr and "runs.json" in result.stderr
    assert not (project / "outputs" / "ghost").exists(), "no fresh run was started instead"


def test_a_run_that_is_running_already_is_refused(project: Path) -> None:
    store = RunStore(project / "outputs" / "demo")
    store.update_manifest("01_alpha", kind="notebook", status="running")  # this live process "runs" it
    _one_line_error(
        cli.invoke(app, ["run", "demo"]), f"run 'demo' is running already: 01_alpha in process {os.getpid()}"
    )
    manifest = json.loads(store.path("manifest.json").read_text())
    manifest["stages"]["01_alpha"]["pid"] = _dead_pid()
    store.path("manifest.json").write_text(json.dumps(manifest))
    assert cli.invoke(app, ["run", "demo", "--to", "alpha"]).exit_code == 0, "a dead process holds nothing"


def test_the_run_index_is_per_checkout_and_a_local_run_comes_first(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, far = tmp_path / "clone1", tmp_path / "clone2", tmp_path / "far" / "demo"
    for clone in (first, second):
        (clone / ".git").mkdir(parents=True)
    far.parent.mkdir()
    (project / "outputs" / "demo").rename(far)
    monkeypatch.chdir(first)
    remember("demo", far, None)
    found = cli.invoke(app, ["status", "demo"])
    assert found.exit_code == 0 and found.output.splitlines()[0] == f"run {far}", found.output
    report = cli.invoke(app, ["report", "demo", "--out", str(tmp_path / "r.html")])
    assert report.exit_code == 0 and report.output.splitlines()[0] == f"run {far}", report.output
    monkeypatch.chdir(second)
    _one_line_error(cli.invoke(app, ["status", "demo"]), "no such run 'demo'")  # another clone's run stays its own
    make_report_run(second / "outputs" / "demo")
    assert cli.invoke(app, ["status", "demo"]).output.splitlines()[0] == f"run {second / 'outputs' / 'demo'}"
    monkeypatch.chdir(first)
    make_report_run(first / "outputs" / "demo")
    local = cli.invoke(app, ["status", "demo"]).output.splitlines()[0]
    assert local == f"run {first / 'outputs' / 'demo'}", "the local outputs/<run> wins over the index"
    entries = json.loads((tmp_path / "cache" / "runs.json").read_text())
    assert entries[f"{first}::demo"]["repository"] == str(first)


def test_the_suite_never_writes_the_users_run_index() -> None:
    users = Path.home() / ".cache" / "glan-workbench" / INDEX_FILE
    assert index_path() != users and not index_path().is_symlink()
