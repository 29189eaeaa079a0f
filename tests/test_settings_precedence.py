"""What you configure is what runs: one precedence (defaults < file < GLAN_* env < explicit parameters) in
notebooks, `glan run`, `glan estimate`; demo sizes as defaults and in configs/demo.yaml; bad input refused."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from typer.testing import CliRunner

from glan_utils.app import runner
from glan_utils.app.cli import app
from glan_utils.core.errors import ConfigError, InputError
from glan_utils.runs.store import RunStore
from glan_utils.settings import load_settings
from glan_utils.settings.notebooks import declared, notebook_settings
from glan_utils.stages import pipeline
from glan_utils.stages.taxonomy import load_taxonomy_file

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CATALOG = runner.discover(NOTEBOOKS)
cli = CliRunner()


def parameter_defaults(nb: runner.Notebook) -> dict[str, object]:
    cells = nbformat.read(nb.path, as_version=4).cells
    source = next(c.source for c in cells if "parameters" in c.metadata.get("tags", []))
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }


@pytest.mark.parametrize("nb", CATALOG, ids=lambda nb: nb.stem)
def test_every_parameters_cell_is_the_declared_map(nb: runner.Notebook) -> None:
    """The parameters cell declares exactly the map's names with its defaults (settings: None), and the settings
    cell derives settings from that map and prints them before any call."""
    assert parameter_defaults(nb) == declared(nb.stem)
    settings_cell = next(c.source for c in nbformat.read(nb.path, 4).cells if "notebook_settings(" in c.source)
    assert f'notebook_settings("{nb.stem}", globals())' in settings_cell
    assert "describe_settings(" in settings_cell  # the stage's settings are printed before any call


def test_a_name_that_sets_several_keys_is_refused_with_the_keys_to_use() -> None:
    with pytest.raises(ConfigError) as info:
        runner.RunPlan("r", CATALOG, None, {"temperature": 0.2}, CATALOG).settings  # noqa: B018
    assert "subjects.temperature" in str(info.value) and "taxonomy.temperature" in str(info.value)
    with pytest.raises(ConfigError, match=r"dataset\.decontamination\.benchmarks, evaluation\.benchmarks"):
        runner.RunPlan("r", CATALOG, None, {"benchmarks": ["gsm8k"]}, CATALOG).routed  # noqa: B018
    plan = runner.RunPlan("r", CATALOG, None, {"questions_per_syllabus": 7, "subjects.temperature": 0.2}, CATALOG)
    assert (plan.settings.questions.questions_per_syllabus, plan.settings.subjects.temperature) == (7, 0.2)


def test_glan_run_passes_every_declared_parameter() -> None:
    """An edited parameters cell (a value left in JupyterLab) never reaches a batch run: every name is passed."""
    plan = runner.RunPlan("r", CATALOG, None, {"rounds": 5}, CATALOG)
    for nb in CATALOG:
        sent = plan.parameters_for(nb)
        assert set(sent) == set(declared(nb.stem) or {}), nb.stem
    sent = plan.parameters_for(next(nb for nb in CATALOG if nb.stem == "02_subjects"))
    assert (sent["rounds"], sent["base_url"], sent["per_round"], sent["overrides"]) == (5, None, None, {})
    assert plan.parameters_for(CATALOG[0])["interactive"] is False


def test_layers_in_order_for_one_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("subjects: {rounds: 7}\n")
    env = {"GLAN_SUBJECTS__ROUNDS": "9"}
    assert load_settings(None, environ={}).subjects.rounds == 2  # default: the demo size
    assert load_settings(config, environ={}).subjects.rounds == 7
    assert load_settings(config, environ=env).subjects.rounds == 9
    assert load_settings(config, {"subjects.rounds": 11}, environ=env).subjects.rounds == 11
    # a notebook's None parameter keeps the lower layers; a value set there wins
    os.environ["GLAN_SUBJECTS__ROUNDS"] = "9"
    try:
        assert notebook_settings("02_subjects", {"config_path": config, "rounds": None}).subjects.rounds == 9
        assert notebook_settings("02_subjects", {"config_path": config, "rounds": 4}).subjects.rounds == 4
    finally:
        del os.environ["GLAN_SUBJECTS__ROUNDS"]


def test_defaults_are_the_demo_config() -> None:
    demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    defaults = load_settings(None, environ={}).snapshot()
    generation = {k: v for k, v in demo.items() if k.split(".")[0] in pipeline.STAGES}
    assert generation, "demo.yaml names the generation sizes"
    for key, value in generation.items():
        section, leaf = key.split(".")
        assert defaults[section][leaf] == value, key
    assert load_settings(ROOT / "configs" / "demo.yaml", environ={}).evaluation.limit == demo["evaluation.limit"]


def test_run_plan_applies_the_same_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("subjects: {rounds: 7, per_round: 3}\n")

    def rounds(params: dict[str, object]) -> int:
        return runner.RunPlan("r", CATALOG, config, params, CATALOG).settings.subjects.rounds

    monkeypatch.delenv("GLAN_SUBJECTS__ROUNDS", raising=False)
    assert rounds({}) == 7
    monkeypatch.setenv("GLAN_SUBJECTS__ROUNDS", "10")  # the README's example
    assert rounds({}) == 10
    assert rounds({"rounds": 5}) == 5  # a notebook parameter by name
    assert rounds({"subjects.rounds": 6}) == 6
    assert rounds({"subjects.rounds": 6, "rounds": 5}) == 5  # by name wins over its dotted key (--params file)
    plan = runner.RunPlan("r", CATALOG, config, {"subjects.rounds": 6, "rounds": 5}, CATALOG)
    nb02 = next(nb for nb in CATALOG if nb.stem == "02_subjects")
    sent = plan.parameters_for(nb02)
    assert sent["rounds"] == 5 and notebook_settings("02_subjects", sent).subjects.rounds == 5


def test_estimate_without_run_reads_no_run_and_respects_the_taxonomy_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tax.yaml").write_text("Sciences:\n  Physical: [Physics, Chemistry]\n")
    (tmp_path / "cfg.yaml").write_text("taxonomy.source: tax.yaml\nsubjects: {rounds: 7, per_round: 3}\n")
    unrelated = RunStore(tmp_path / "outputs" / "demo")  # an unrelated run with 5 disciplines' worth of rounds
    unrelated.write_config({})
    (unrelated.root / "taxonomy.jsonl").write_text("")
    result = cli.invoke(app, ["estimate", "--config", "cfg.yaml", "--notebooks", str(NOTEBOOKS)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("planned from settings")
    subjects = next(line for line in result.output.splitlines() if line.startswith("| subjects"))
    assert [c.strip() for c in subjects.split("|")][2:5] == ["2", "settings", "14"]  # 2 disciplines x 7 rounds
    named = cli.invoke(app, ["estimate", "--config", "cfg.yaml", "--run", "demo", "--notebooks", str(NOTEBOOKS)])
    assert named.exit_code == 0, named.output
    assert named.output.startswith("read run 'demo'")
    missing = cli.invoke(app, ["estimate", "--run", "ghost", "--notebooks", str(NOTEBOOKS)])
    assert missing.exit_code == 2 and "no such run" in missing.stderr


def test_paper_config_is_ten_million_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = cli.invoke(app, ["estimate", "--config", "configs/paper.yaml"])
    assert result.exit_code == 0, result.output
    total = result.output.strip().splitlines()[-1]
    calls, pairs = (int(part.split()[0].replace(",", "")) for part in total.removeprefix("total: ").split(", ")[:2])
    assert 9_500_000 <= pairs <= 10_500_000 and 19_000_000 <= calls <= 21_000_000, total
    dollars = float(total.rsplit("~$", 1)[1].replace(",", ""))
    assert dollars > 1_000, "gpt-4o-mini is priced in paper.yaml"
    disciplines = [
        n for n in load_taxonomy_file(ROOT / "configs" / "taxonomy" / "paper.yaml") if n.level == "discipline"
    ]
    assert len(disciplines) == 123
    fields = {n.name for n in load_taxonomy_file(ROOT / "configs" / "taxonomy" / "paper.yaml") if n.level == "field"}
    assert len(fields) == 6


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("Sciences:\n  Physical:\n    - Physics\n    - null\n", "line 4: expected a name, found null"),
        ("Sciences:\n  Physical:\n    - " + "x" * 10_000 + "\n", "longer than taxonomy.max_name_chars (200)"),
        ("- {name: Sciences}\n- {name: ~, parent: Sciences}\n", "found null"),
    ],
)
def test_bad_taxonomy_names_are_one_line(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_taxonomy_file(path)
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"questions.questions_per_syllabus": 99999999999999999999999}, "questions.questions_per_syllabus"),
        ({"subjects.rounds": 10**6}, "subjects.rounds"),
        ({"syllabi.min_sessions": 9, "syllabi.max_sessions": 3}, "max_sessions (3) is below min_sessions (9)"),
        ({"taxonomy.n_fields": None}, "taxonomy.n_fields"),
    ],
)
def test_out_of_bounds_settings_are_one_line(overrides: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, overrides, environ={})
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow  # two notebooks under papermill (~20 s)
@pytest.mark.timeout(300)
def test_glan_run_honours_the_settings_file(openai_server, tmp_path: Path) -> None:
    """The issue's case: rounds 7 in the file, 2 disciplines -> 14 subject rounds (the notebook said 2)."""
    (tmp_path / "tax.yaml").write_text("Sciences:\n  Physical: [Physics, Chemistry]\n")
    (tmp_path / "cfg.yaml").write_text(
        yaml.safe_dump(
            {
                "taxonomy": {"source": "tax.yaml"},
                "subjects": {"rounds": 7, "per_round": 3},
                "llm": {"base_url": openai_server.base_url, "model": "fake-model", "timeout_s": 10},
            }
        )
    )
    glan = str(Path(sys.executable).with_name("glan"))
    command = [glan, "run", "R", "--config", "cfg.yaml", "--to", "2", "--notebooks", str(NOTEBOOKS)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rounds = (tmp_path / "outputs" / "R" / "subject_rounds.jsonl").read_text().splitlines()
    assert len(rounds) == 14 == openai_server.count
    executed = nbformat.read(tmp_path / "outputs" / "R" / "notebooks" / "02_subjects.ipynb", 4)
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "rounds: 7" in printed  # the effective settings, shown before the calls


def _stage_costs(output: str) -> dict[str, float]:
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in output.splitlines() if line.startswith("| ")]
    header = rows[0]
    return {row[0]: float(row[header.index("cost_usd")].replace(",", "")) for row in rows[2:]}


def test_estimate_shows_the_plan_against_the_budget_and_the_batch_price(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage a capped run would stop in, read off the estimate's own per-stage dollars; batch mode halves them."""
    monkeypatch.chdir(ROOT)
    base = ["estimate", "--config", "configs/paper-mini.yaml"]
    online = cli.invoke(app, base)
    assert online.exit_code == 0, online.output
    assert "budget:" not in online.output  # no cap, no budget line
    costs = _stage_costs(online.output)
    before_questions = costs["subjects"] + costs["syllabi"]
    cap = before_questions + costs["questions"] / 2
    capped = cli.invoke(app, [*base, "-p", "llm.max_cost_usd", f"{cap:.2f}"])
    line = next(x for x in capped.output.splitlines() if x.startswith("budget:"))
    assert f"vs llm.max_cost_usd ${cap:,.2f}: the run stops in questions after about" in line, line
    fits = cli.invoke(app, [*base, "-p", "llm.max_cost_usd", str(sum(costs.values()) + 1)])
    assert "the whole plan fits" in fits.output
    tokens = cli.invoke(app, [*base, "-p", "llm.max_tokens_total", "50000"])
    assert "vs llm.max_tokens_total 50,000: the run stops in subjects" in tokens.output, tokens.output
    batch = cli.invoke(app, [*base, "-p", "llm.mode", "batch"])
    assert batch.exit_code == 0, batch.output
    halved = _stage_costs(batch.output)
    assert halved["answers"] == pytest.approx(costs["answers"] / 2, abs=0.01)
    assert "at the Batch API price (x0.5)" in batch.output
    unpriced = cli.invoke(app, [*base, "-p", "llm.model", "my-finetune", "-p", "llm.max_cost_usd", "5"])
    assert "warning: no price for model 'my-finetune' in llm.prices" in unpriced.output, unpriced.output


def test_readme_cost_table_is_what_glan_estimate_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    """One price for the paper run: the README's table is the estimate's own output (upper bound and typical)."""
    monkeypatch.chdir(ROOT)
    result = cli.invoke(app, ["estimate", "--config", "configs/paper.yaml"])
    assert result.exit_code == 0, result.output
    printed = result.output.split("\n", 1)[1].strip()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = readme.split("<!-- glan estimate --config configs/paper.yaml -->\n```text\n", 1)[1].split("\n```", 1)[0]
    assert shown == printed, "README is stale: paste the output of `glan estimate --config configs/paper.yaml`"
    assert "quality (disabled)" in printed and "upper bound (every reply at max_tokens); typical replies:" in printed
    assert "| 9,999,900 |" in printed, "thousands separators"
