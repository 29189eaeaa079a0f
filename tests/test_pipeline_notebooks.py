"""Notebooks 01-04 run top to bottom under papermill against the local server; a rerun makes no new calls."""

from __future__ import annotations

import json
from pathlib import Path

import papermill
import pytest
import yaml

from glan_utils.runs.store import RunStore

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
TINY = {
    "01_taxonomy": {"n_fields": 1, "n_subfields": 2, "n_disciplines": 1, "interactive": False},
    "02_subjects": {"rounds": 2, "per_round": 2, "max_subjects": 2},
    "03_syllabi": {"min_sessions": 2, "max_sessions": 3},
    "04_questions": {"questions_per_syllabus": 2},
}


def execute(name: str, out_dir: Path, common: dict) -> dict:
    output = out_dir / f"{name}.ipynb"
    params = {**common, **TINY[name]}
    papermill.execute_notebook(
        NOTEBOOKS / f"{name}.ipynb",
        output,
        parameters=params,
        kernel_name="python3",
        cwd=str(out_dir),
        progress_bar=False,
        log_output=False,
    )
    return json.loads(output.read_text(encoding="utf-8"))


def text_outputs(notebook: dict) -> str:
    parts = []
    for cell in notebook["cells"]:
        for out in cell.get("outputs", []):
            parts.append("".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


@pytest.mark.slow  # four kernels twice: ~40 s on an idle 2-core machine
@pytest.mark.timeout(300)
def test_notebooks_run_in_order_and_rerun_makes_no_calls(openai_server, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"llm": {"cache_path": str(tmp_path / "cache.sqlite"), "timeout_s": 10}}))
    common = {
        "run_name": "nb",
        "output_dir": str(tmp_path / "outputs"),
        "config_path": str(config),
        "base_url": openai_server.base_url,
        "model": "fake-model",
        "language": "Français",  # shapes every stage's records, so every notebook of the run takes it (run identity)
    }
    executed = {name: execute(name, tmp_path, common) for name in TINY}
    store = RunStore(tmp_path / "outputs" / "nb")
    pairs = list(store.iter_records("answers"))
    assert pairs and all(p.language == "Français" for p in pairs)
    assert len({p.discipline for p in pairs}) == 2
    first = text_outputs(executed["01_taxonomy"])
    assert "calls to fake-model" in first and "--- user ---" in first  # estimate and prompt shown
    assert first.index("calls to fake-model") < first.index("records_written")  # ... before anything is spent
    plots = {p.stem for p in (store.root / "plots").glob("*.html")}
    assert {
        "taxonomy",
        "coverage",
        "pairs_vs_target",
        "difficulty_mix",
        "answer_lengths",
        "subject_levels",
        "concepts_per_question",
        "sessions_per_syllabus",
        "quality_heatmap",
        "quality_verifier",
        "quality_lowest",
    } <= plots
    manifest = store.read_manifest()["stages"]
    stages = ("taxonomy", "subjects", "syllabi", "answers", "quality", "followups")
    assert all(manifest[s]["status"] == "complete" for s in stages)
    assert {r.pair_id for r in store.iter_records("followups")} == {p.id for p in pairs}  # one round per pair
    assert "check_attempt" in text_outputs(executed["04_questions"])  # the kind mix shows every kind
    sent = openai_server.count
    assert sent > 0
    (tmp_path / "rerun").mkdir()
    for name in TINY:
        execute(name, tmp_path / "rerun", common)
    assert openai_server.count == sent
    assert len(list(store.iter_records("answers"))) == len(pairs)


def _error_of(output: Path) -> dict:
    """The one error output of an executed notebook that failed."""
    cells = json.loads(output.read_text(encoding="utf-8"))["cells"]
    return next(out for cell in cells for out in cell.get("outputs", []) if out["output_type"] == "error")


@pytest.mark.timeout(300)
def test_a_missing_input_or_a_wrong_parameter_is_one_line_in_the_notebook(openai_server, tmp_path):
    common = {"output_dir": str(tmp_path / "outputs"), "base_url": openai_server.base_url, "model": "fake-model"}
    output = tmp_path / "02.ipynb"
    for params, line in [
        ({"run_name": "empty"}, "InputError\x1b[0m: run 'empty' has no taxonomy: run 01_taxonomy first"),
        ({"run_name": "typo", "rounds": "three"}, "subjects.rounds: Input should be a valid integer"),
    ]:
        with pytest.raises(papermill.PapermillExecutionError):
            papermill.execute_notebook(
                NOTEBOOKS / "02_subjects.ipynb",
                output,
                parameters={**common, **params},
                kernel_name="python3",
                cwd=str(tmp_path),
                progress_bar=False,
            )
        error = _error_of(output)
        assert len(error["traceback"]) == 1 and "\n" not in error["traceback"][0], error["traceback"]
        assert line in error["traceback"][0]
    assert "(you set rounds = 'three')" in error["evalue"]
    assert openai_server.count == 0
    assert not (tmp_path / "outputs" / "empty" / "subjects.jsonl").exists(), "nothing recorded as complete"
