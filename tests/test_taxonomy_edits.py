"""Editing the taxonomy of a run that has answers: each edit pays only for what changed, and the data set (train and
GLAN-Test) is the edited taxonomy's. Calls are requests the test server received."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from test_cli_process import REPO, glan, settings_file
from typer.testing import CliRunner

from glan_utils.app.cli import app
from glan_utils.data.build import DatasetReport, build_dataset
from glan_utils.runs.store import RunStore
from glan_utils.settings import Settings
from glan_utils.stages import pipeline
from glan_utils.testing import OpenAIServer
from glan_utils.views.review_widget import ReviewWidget

SCIENCES = "Sciences:\n  Physical: [Physics, Chemistry]\n  Life: [Botany]\n"


SIZES = {
    "subjects.rounds": 1,
    "subjects.per_round": 2,
    "subjects.max_subjects": 2,
    "syllabi.min_sessions": 2,
    "syllabi.max_sessions": 3,
    "questions.questions_per_syllabus": 2,
    "quality.enabled": False,
    "followups.turns": 0,
    "dataset.quality.enabled": False,
    "dataset.decontamination.enabled": False,
    "dataset.dedup.near": False,
    "dataset.export.test_per_discipline": 1,
}


@pytest.fixture
def sized(tmp_path: Path, openai_server, make_settings) -> Callable[..., Settings]:
    """Settings of a tiny run of the taxonomy file `text` (written to tax.yaml) against the test server."""

    def make(text: str, **overrides: Any) -> Settings:
        source = tmp_path / "tax.yaml"
        source.write_text(text, encoding="utf-8")
        values = {**SIZES, "taxonomy.source": str(source), **{k.replace("__", "."): v for k, v in overrides.items()}}
        return make_settings(openai_server.base_url, values)

    return make


async def rerun(settings: Settings, server) -> tuple[int, DatasetReport, list[dict[str, Any]]]:
    """Run every stage to the answers (each resumes), build the data set: (calls made, report, data set rows)."""
    before = server.count
    await pipeline.run_until(settings, "answers")
    calls = server.count - before
    report = build_dataset(RunStore(settings.run_dir), settings.dataset)
    columns = ["id", "split", "field", "subfield", "discipline", "discipline_id"]
    return calls, report, pq.read_table(settings.run_dir / "dataset" / "qa.parquet", columns=columns).to_pylist()


def by_discipline(rows: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Pair ids per discipline name, train and test together."""
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row["discipline"], set()).add(row["id"])
    return found


def subtree_calls(settings: Settings, discipline: str) -> int:
    """What one discipline costs: its subject round, a syllabus per subject, two questions and two answers each."""
    node = next(d for d in pipeline.kept_disciplines(settings) if d.name == discipline)
    syllabi = sum(1 for s in pipeline.kept_records(settings, "syllabi") if s.discipline_id == node.id)
    assert syllabi >= 1
    return 1 + syllabi + 2 * 2 * syllabi


async def test_file_edits_rename_move_remove_undo_and_add(openai_server, sized, tmp_path):
    calls, _, rows = await rerun(sized(SCIENCES), openai_server)
    first = by_discipline(rows)
    assert set(first) == {"Physics", "Chemistry", "Botany"} and calls > 0
    assert {r["discipline"] for r in rows if r["split"] == "test"} == set(first)  # GLAN-Test: one per discipline

    typo = SCIENCES.replace("Chemistry", "chemistry")  # a typo fix is a rename: same node, new name
    calls, _, rows = await rerun(sized(typo), openai_server)
    assert (
        calls == 0 and by_discipline(rows)["chemistry"] == first["Chemistry"] and "Chemistry" not in by_discipline(rows)
    )

    moved = "Sciences:\n  Physical: [Physics]\n  Life: [Botany, chemistry]\n"  # same name elsewhere: a move
    calls, _, rows = await rerun(sized(moved), openai_server)
    assert calls == 0 and {r["subfield"] for r in rows if r["discipline"] == "chemistry"} == {"Life"}

    removed = "Sciences:\n  Physical: [Physics]\n  Life: [Botany]\n"  # deleted from the file: not kept
    calls, report, rows = await rerun(sized(removed), openai_server)
    assert calls == 0 and set(by_discipline(rows)) == {"Physics", "Botany"}
    assert report.excluded == {"not_in_taxonomy": len(first["Chemistry"])}
    assert report.built_from["taxonomy_version"] and "not_in_taxonomy" in (report_card := _card(tmp_path))
    assert report.built_from["taxonomy_version"] in report_card

    settings = sized(SCIENCES)  # undo: the old records are the plan again
    calls, report, rows = await rerun(settings, openai_server)
    assert calls == 0 and by_discipline(rows) == first and report.excluded == {}

    edited = "Sciences:\n  Physical: [Astronomy, physics]\n  Life: [Botany]\n"  # added before the others
    settings = sized(edited)
    estimate = glan_estimate(settings, tmp_path)  # before spending: what the edit generates, drops and keeps
    diff = pipeline.taxonomy_diff(settings)
    assert diff.generate == ["Sciences > Physical > Astronomy"] and diff.drop == ["Sciences > Physical > Chemistry"]
    assert diff.rename == ["Sciences > Physical > Physics -> Sciences > Physical > physics"] and diff.keep == 2
    assert diff.pairs_leaving == len(first["Chemistry"]) and diff.calls > 0
    assert "\n".join(diff.lines()) in estimate and f"{len(first['Chemistry'])} pairs leave the data set" in estimate
    calls, report, rows = await rerun(settings, openai_server)
    assert calls == subtree_calls(settings, "Astronomy") == diff.calls  # only the new subtree is paid
    assert {k: v for k, v in by_discipline(rows).items() if k != "Astronomy"} == {
        "physics": first["Physics"],
        "Botany": first["Botany"],
    }
    assert pipeline.taxonomy_diff(settings).lines() == ["taxonomy: unchanged since the last run (3 disciplines kept)"]


def glan_estimate(settings: Settings, tmp_path: Path) -> str:
    """`glan estimate --run demo` with the test's settings (as -p parameters); its output."""
    params = {**SIZES, "output_dir": str(settings.output_dir), "taxonomy.source": settings.taxonomy.source}
    params |= {"llm.base_url": settings.llm.base_url, "llm.model": "fake-model"}
    args = [arg for key, value in params.items() for arg in ("-p", key, str(value))]
    result = CliRunner().invoke(app, ["estimate", "--run", "demo", *args, "--notebooks", str(tmp_path / "none")])
    assert result.exit_code == 0, result.output
    return result.output


def _card(tmp_path: Path) -> str:
    return (tmp_path / "outputs" / "demo" / "dataset" / "README.md").read_text(encoding="utf-8")


async def test_review_widget_edits_cost_nothing_but_additions(openai_server, sized):
    settings = sized(SCIENCES)
    _, _, rows = await rerun(settings, openai_server)
    first = by_discipline(rows)
    nodes = {n.name: n for n in pipeline.current_nodes(settings)}
    widget = ReviewWidget(list(nodes.values()), settings.run_dir, settings=settings)
    widget.reviewer.value = "ann"
    widget.vote(nodes["Physics"].id, "rename", "Mechanics and Physics")
    widget.row("Chemistry").remove.value = True
    widget.vote(nodes["Botany"].id, "move", new_parent_id=nodes["Physical"].id)
    widget.save()
    calls, report, rows = await rerun(settings, openai_server)
    assert calls == 0 and by_discipline(rows) == {"Mechanics and Physics": first["Physics"], "Botany": first["Botany"]}
    assert {r["subfield"] for r in rows if r["discipline"] == "Botany"} == {"Physical"}
    assert not any(r["discipline_id"] == nodes["Chemistry"].id for r in rows)  # neither in train nor in test
    assert report.excluded == {"not_in_taxonomy": len(first["Chemistry"])}

    widget.vote(nodes["Chemistry"].id, "keep")  # undo
    widget.save()
    calls, _, rows = await rerun(settings, openai_server)
    assert calls == 0 and by_discipline(rows)["Chemistry"] == first["Chemistry"]

    sciences = widget.row("Sciences")
    sciences.child_name.value = "Earth"
    sciences.add.click()
    widget.review.add(widget.review.additions[-1].node_id, "Geology")  # under the added sub-field
    widget.save()
    calls, _, rows = await rerun(settings, openai_server)
    assert calls == subtree_calls(settings, "Geology")
    assert {r["subfield"] for r in rows if r["discipline"] == "Geology"} == {"Earth"}

    widget.vote(nodes["Botany"].id, "regenerate", "Plant Biology")  # a rename that changes meaning: made afresh
    widget.save()
    calls, report, rows = await rerun(settings, openai_server)
    assert calls == subtree_calls(settings, "Plant Biology") and "Botany" not in by_discipline(rows)
    assert report.excluded == {"not_in_taxonomy": len(first["Botany"])}


async def test_lower_cap_replans_and_raising_it_again_is_free(openai_server, sized):
    two = sized(SCIENCES, subjects__rounds=2)
    _, _, rows = await rerun(two, openai_server)
    one = sized(SCIENCES, subjects__rounds=2, subjects__max_subjects=1)
    calls, report, fewer = await rerun(one, openai_server)
    assert calls == 0 and pipeline.count_kept(one, "subjects") == 3 and pipeline.count_kept(one, "syllabi") == 3
    assert report.excluded == {"outside_plan": len(rows) - len(fewer)} and 0 < len(fewer) < len(rows)
    calls, report, again = await rerun(two, openai_server)
    assert calls == 0 and {r["id"] for r in again} == {r["id"] for r in rows} and report.excluded == {}


@pytest.mark.slow
def test_glan_run_after_deleting_a_discipline_from_the_file(tmp_path: Path) -> None:
    """The real `glan run` (notebooks 01-05): deleting Chemistry from the file costs nothing and takes its pairs
    out of train and GLAN-Test (the other edits are checked above, through the code the notebooks run)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GLAN_", "OPENAI_"))}
    env = clean | {"PYTHONPATH": str(REPO), "GLAN_CACHE_DIR": str(tmp_path / "cache")}
    source = tmp_path / "tax.yaml"
    config = settings_file(tmp_path, "", taxonomy={"source": str(source)})
    with OpenAIServer(models=["fake-model"]) as server:
        settings = yaml.safe_load(config.read_text(encoding="utf-8"))
        settings["llm"]["base_url"] = server.base_url
        config.write_text(yaml.safe_dump(settings), encoding="utf-8")
        args = [arg for key, value in SIZES.items() for arg in ("-p", key, str(value))]
        runs = []
        for text in (SCIENCES, SCIENCES.replace(", Chemistry", "")):
            source.write_text(text, encoding="utf-8")
            before = server.count
            done = glan("run", "R", "-c", str(config), "--to", "5", *args, env=env, cwd=REPO, timeout=600)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            dataset = tmp_path / "elsewhere" / "R" / "dataset"
            rows = [json.loads(line) for split in ("train", "test") for line in (dataset / f"{split}.jsonl").open()]
            runs.append((server.count - before, sorted(r["discipline"] for r in rows)))
    (first_calls, everything), (removed_calls, without) = runs
    assert first_calls > 0 and removed_calls == 0 and "Chemistry" in everything
    assert without == [d for d in everything if d != "Chemistry"]
