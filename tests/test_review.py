"""Taxonomy review: cascade, renames, additions, majority merge, save/load, the widget and the pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from glan_utils.core.errors import InputError
from glan_utils.stages import pipeline
from glan_utils.stages.review import Review, apply_review, disciplines, load_reviews, merge, reviews_dir
from glan_utils.stages.taxonomy import load_taxonomy_file
from glan_utils.views.review_widget import ReviewWidget

DATA = Path(__file__).parent / "data" / "taxonomy"


@pytest.fixture
def nodes():
    return load_taxonomy_file(DATA / "nested.yaml")


def named(nodes, name):
    return next(n for n in nodes if n.name == name)


def names(nodes):
    return {n.name for n in nodes}


def test_no_review_keeps_everything(nodes):
    assert names(apply_review(nodes, None)) == names(nodes)


def test_remove_cascades_to_the_subtree(nodes):
    review = Review(reviewer="ann")
    review.decide(named(nodes, "Natural Sciences").id, "remove")
    kept = apply_review(nodes, review)
    assert names(kept) == {"Humanities", "History", "Ancient History"}


def test_rename_rebuilds_paths_and_ids_below(nodes):
    review = Review(reviewer="ann")
    review.decide(named(nodes, "Physics").id, "rename", "Physical Sciences")
    kept = apply_review(nodes, review)
    renamed = named(kept, "Physical Sciences")
    quantum = named(kept, "Quantum Mechanics")
    assert quantum.path == ["Natural Sciences", "Physical Sciences", "Quantum Mechanics"]
    assert quantum.parent_id == renamed.id != named(nodes, "Physics").id
    assert quantum.id != named(nodes, "Quantum Mechanics").id  # ids follow content


def test_added_child_takes_the_next_level(nodes):
    review = Review(reviewer="ann")
    review.add(named(nodes, "History").id, "Medieval History")
    added = named(apply_review(nodes, review), "Medieval History")
    assert added.level == "discipline" and added.path == ["Humanities", "History", "Medieval History"]
    assert added.source == "user"


def test_merge_by_majority(nodes):
    physics, history = named(nodes, "Physics").id, named(nodes, "History").id
    ann, bob, cid = Review(reviewer="ann"), Review(reviewer="bob"), Review(reviewer="cid")
    ann.decide(physics, "remove")
    bob.decide(physics, "remove")
    cid.decide(history, "remove")  # one vote of three: kept
    ann.decide(history, "rename", "World History")
    bob.decide(history, "rename", "World History")
    ann.add(physics, "Optics")  # one proposal of three: not added
    for reviewer in (ann, bob):
        reviewer.add(history, "Modern History")
    kept = apply_review(nodes, merge([ann, bob, cid]))
    assert "Physics" not in names(kept) and "Quantum Mechanics" not in names(kept)
    assert "World History" in names(kept) and "Modern History" in names(kept) and "Optics" not in names(kept)


def test_tie_keeps_the_node(nodes):
    ann, bob = Review(reviewer="ann"), Review(reviewer="bob")
    ann.decide(named(nodes, "Physics").id, "remove")
    assert "Physics" in names(apply_review(nodes, merge([ann, bob])))


def test_save_load_roundtrip_and_folder_merge(nodes, tmp_path):
    ann, bob = Review(reviewer="ann"), Review(reviewer="bob")
    for review in (ann, bob):
        review.decide(named(nodes, "Chemistry").id, "remove")
        review.save(tmp_path / "reviews" / f"{review.reviewer}.json")
    loaded = load_reviews(tmp_path / "reviews")
    assert [r.reviewer for r in loaded] == ["ann", "bob"]
    assert loaded[0].decisions == ann.decisions
    assert "Organic Chemistry" not in names(apply_review(nodes, merge(loaded)))


def test_invalid_review_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "review.json"
    bad.write_text('{"decisions": {"x": {"action": "explode"}}}', encoding="utf-8")
    with pytest.raises(InputError, match="not a valid review file"):
        load_reviews(bad)


def test_widget_remove_rename_add_and_save(nodes, tmp_path):
    widget = ReviewWidget(nodes, tmp_path)
    row = widget.row("Chemistry")
    assert "glan-node-chemistry" in row.box._dom_classes and "glan-remove" in row.remove._dom_classes
    assert row.remove.description == "remove" and widget.save_button.description == "Save"
    row.remove.value = True
    assert widget.row("Organic Chemistry").remove.disabled  # greyed out: removal cascades
    widget.row("Physics").rename.value = "Physical Sciences"
    history = widget.row("History")
    history.child_name.value = "Medieval History"
    history.add.click()
    widget.reviewer.value = "Ann Lee"
    widget.save_button.click()
    saved = reviews_dir(tmp_path) / "ann-lee.json"
    assert saved.exists() and str(saved) in widget.status.value
    kept = disciplines(apply_review(nodes, merge(load_reviews(reviews_dir(tmp_path)))))
    assert names(kept) == {"Classical Mechanics", "Quantum Mechanics", "Ancient History", "Medieval History"}
    assert named(kept, "Quantum Mechanics").path[1] == "Physical Sciences"


async def test_pipeline_applies_saved_reviews_or_the_configured_file(openai_server, make_settings, tmp_path):
    settings = make_settings(openai_server.base_url, {"taxonomy.source": str(DATA / "nested.yaml")})
    await pipeline.run(settings, "taxonomy")
    assert len(pipeline.kept_disciplines(settings)) == 5
    nodes = pipeline.kept_taxonomy(settings)
    review = Review(reviewer="ann")
    review.decide(named(nodes, "Humanities").id, "remove")
    review.save(reviews_dir(settings.run_dir) / "ann.json")
    assert "Ancient History" not in names(pipeline.kept_disciplines(settings))
    other = Review(reviewer="bob")
    other.decide(named(nodes, "Physics").id, "remove")
    configured = make_settings(openai_server.base_url, {"taxonomy.review_file": str(other.save(tmp_path / "b.json"))})
    assert names(pipeline.kept_disciplines(configured)) == {
        "Organic Chemistry",
        "Inorganic Chemistry",
        "Ancient History",
    }


def test_same_discipline_under_two_parents_is_flagged(nodes):
    from glan_utils.stages.review import repeated_disciplines

    assert repeated_disciplines(nodes) == {}  # a file's names are unique
    algebra = next(n for n in nodes if n.level == "subfield")
    other = next(n for n in nodes if n.level == "subfield" and n.parent_id != algebra.parent_id)
    review = Review(reviewer="r")
    review.add(algebra.id, "Statistics")
    review.add(other.id, "statistics ")  # same name, another parent, other case
    flagged = repeated_disciplines(apply_review(nodes, review))
    assert list(flagged) == ["Statistics"] and len(flagged["Statistics"]) == 2
    assert {path.split(" > ")[1] for path in flagged["Statistics"]} == {algebra.name, other.name}
