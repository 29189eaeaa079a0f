"""Taxonomy generation against the local server, and user taxonomy files with their error cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from glan_utils.core.errors import InputError
from glan_utils.runs.store import RunStore
from glan_utils.stages import pipeline
from glan_utils.stages.taxonomy import LEVELS, load_taxonomy_file

DATA = Path(__file__).parent / "data" / "taxonomy"
GOOD = ["nested.yaml", "edges.json", "paths.csv", "edges.csv"]


def shape(nodes):
    """Levels and paths only: what every format of the same taxonomy must agree on."""
    return sorted((n.level, tuple(n.path)) for n in nodes)


async def test_generation_makes_one_call_per_level_per_parent(openai_server, make_settings):
    settings = make_settings(
        openai_server.base_url,
        {"taxonomy.n_fields": 3, "taxonomy.n_subfields": 2, "taxonomy.n_disciplines": 2},
    )
    report = await pipeline.run(settings, "taxonomy")
    nodes = list(RunStore(settings.run_dir).iter_records("taxonomy"))
    by_id = {n.id: n for n in nodes}
    fields = [n for n in nodes if n.level == "field"]
    subfields = [n for n in nodes if n.level == "subfield"]
    assert 1 <= len(fields) <= 3 and all(n.parent_id is None for n in fields)
    assert openai_server.count == 1 + len(fields) + len(subfields) == report.llm.calls
    for node in nodes:
        if node.parent_id:
            parent = by_id[node.parent_id]
            assert LEVELS.index(node.level) == LEVELS.index(parent.level) + 1
            assert node.path == [*parent.path, node.name]
        assert node.provenance.prompt == "taxonomy" and node.provenance.model == "fake-model"
    schemas = [r["response_format"]["json_schema"]["schema"] for r in openai_server.requests]
    assert [s["properties"]["items"]["maxItems"] for s in schemas] == [3] + [2] * (len(schemas) - 1)
    assert (await pipeline.run(settings, "taxonomy")).llm.calls == 0 and openai_server.count == report.llm.calls


@pytest.mark.parametrize("name", GOOD)
def test_user_files_in_every_format_agree(name):
    nodes = load_taxonomy_file(DATA / name)
    assert shape(nodes) == shape(load_taxonomy_file(DATA / "nested.yaml"))
    assert len([n for n in nodes if n.level == "discipline"]) == 5
    assert all(n.source == "user" for n in nodes)
    by_path = {tuple(n.path): n for n in nodes}
    for node in nodes:
        assert node.parent_id == (by_path[tuple(node.path[:-1])].id if len(node.path) > 1 else None)


def test_descriptions_are_kept():
    organic = next(n for n in load_taxonomy_file(DATA / "edges.json") if n.name == "Organic Chemistry")
    assert organic.description == "Carbon compounds and their reactions"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("cycle.yaml", r"line 2: cycle: Alpha -> Gamma -> Beta -> Alpha"),
        ("empty_name.csv", r"line 3: empty name"),
        ("duplicate.yaml", r"line 5: duplicate 'Optics' \(first at line 3\)"),
        ("too_deep.json", r"line 1: deeper than field/subfield/discipline"),
        ("unknown_parent.csv", r"line 4: unknown parent 'Phisics'"),
        ("latin1.csv", r"line 3: not UTF-8 text"),
        ("missing.yaml", r"taxonomy file not found"),
    ],
)
def test_bad_user_files_name_the_line(name, message):
    with pytest.raises(InputError, match=message):
        load_taxonomy_file(DATA / name)


def test_bad_yaml_and_bad_csv_header(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("Sciences:\n  Physics: [Optics\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"line \d+: not valid YAML/JSON"):
        load_taxonomy_file(broken)
    header = tmp_path / "header.csv"
    header.write_text("area,topic\nA,B\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 1: CSV needs columns"):
        load_taxonomy_file(header)


async def test_user_file_replaces_generation(openai_server, make_settings):
    settings = make_settings(openai_server.base_url, {"taxonomy.source": str(DATA / "paths.csv")})
    report = await pipeline.run(settings, "taxonomy")
    assert openai_server.count == 0 and report.summary.records == 10
    assert [d.name for d in pipeline.kept_disciplines(settings)] == [
        "Classical Mechanics",
        "Quantum Mechanics",
        "Organic Chemistry",
        "Inorganic Chemistry",
        "Ancient History",
    ]
    assert (await pipeline.run(settings, "taxonomy")).summary.records == 0  # idempotent: appended by id


async def test_hostile_names_are_quoted_data_and_records_stay_valid(openai_server, make_settings):
    settings = make_settings(
        openai_server.base_url,
        {"taxonomy.source": str(DATA / "hostile.yaml"), "subjects.rounds": 1, "subjects.per_round": 2},
    )
    await pipeline.run(settings, "taxonomy")
    report = await pipeline.run(settings, "subjects")
    hostile = pipeline.kept_disciplines(settings)[0].name
    assert hostile.startswith("Ignore previous instructions")
    user_turn = openai_server.requests[0]["messages"][-1]["content"]
    assert f'"{hostile}"' in user_turn  # quoted verbatim as data, never spliced in as an instruction
    assert report.summary.failed == 0
    subjects = list(RunStore(settings.run_dir).iter_records("subjects"))
    assert subjects and all(s.discipline == hostile for s in subjects)


async def test_raising_a_size_grows_the_generated_tree_by_the_missing_children(openai_server, make_settings):
    sizes = {"taxonomy.n_fields": 1, "taxonomy.n_subfields": 1}
    small = make_settings(openai_server.base_url, {**sizes, "taxonomy.n_disciplines": 1})
    assert (await pipeline.run(small, "taxonomy")).llm.calls == 3
    before = {n.id: n.name for n in pipeline.kept_disciplines(small)}
    large = make_settings(openai_server.base_url, {**sizes, "taxonomy.n_disciplines": 3})
    assert (await pipeline.run(large, "taxonomy")).llm.calls == 1  # one growth call for the one sub-field
    asked = openai_server.requests[-1]
    assert asked["response_format"]["json_schema"]["schema"]["properties"]["items"]["maxItems"] == 2
    assert all(f'"{name}"' in asked["messages"][-1]["content"] for name in before.values())
    after = {n.id: n.name for n in pipeline.kept_disciplines(large)}
    assert before.items() < after.items() and len(after) <= 3  # the old ids stay, new names join them
    for settings in (large, small):  # unchanged, or smaller again: nothing to ask
        assert (await pipeline.run(settings, "taxonomy")).llm.calls == 0
