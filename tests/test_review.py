"""Taxonomy review: cascade, renames, additions, majority merge, votes and conflicts, versions and diffs,
suggested children, cross-branch duplicates, the widget (lazy tree, filter, counts) and the pipeline."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from browser.trees import paper_tree, synthetic_tree

from glan_utils.core.errors import InputError
from glan_utils.core.records import TaxonomyNode
from glan_utils.llm.ledger import read_ledger
from glan_utils.runs.store import RunStore
from glan_utils.stages import pipeline
from glan_utils.stages.grow import cross_branch_duplicates, propose_children
from glan_utils.stages.review import (
    MANIFEST_ENTRY,
    Review,
    apply_review,
    diff_reviews,
    disciplines,
    load_reviews,
    merge,
    record_in_manifest,
    reviews_dir,
    save_version,
    tally,
    versions,
)
from glan_utils.stages.taxonomy import load_taxonomy_file
from glan_utils.testing.openai_server import Behavior
from glan_utils.views.review_widget import MAX_ROWS, ReviewWidget, history_frame

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


def test_rename_rebuilds_paths_and_keeps_ids(nodes):
    review = Review(reviewer="ann")
    review.decide(named(nodes, "Physics").id, "rename", "Physical Sciences")
    kept = apply_review(nodes, review)
    renamed = named(kept, "Physical Sciences")
    quantum = named(kept, "Quantum Mechanics")
    assert quantum.path == ["Natural Sciences", "Physical Sciences", "Quantum Mechanics"]
    assert quantum.parent_id == renamed.id == named(nodes, "Physics").id  # the name is display data
    assert quantum.id == named(nodes, "Quantum Mechanics").id


def test_a_review_saved_before_stable_ids_keeps_the_ids_it_gave(nodes, tmp_path):
    """Older runs' records hang off the path ids their reviews gave renamed subtrees: those stay valid."""
    review = Review(reviewer="ann")
    review.decide(named(nodes, "Physics").id, "rename", "Physical Sciences")
    review.add(named(nodes, "History").id, "Medieval History")
    saved = review.model_dump(mode="json", exclude={"stable_ids"})
    for addition in saved["additions"]:
        del addition["node_id"]
    (tmp_path / "old.json").write_text(json.dumps(saved), encoding="utf-8")
    older = load_reviews(tmp_path / "old.json")[0]
    assert not older.stable_ids and not merge([older, review]).stable_ids
    assert load_reviews(review.save(tmp_path / "new.json"))[0].stable_ids  # saved now: ids survive renames
    kept = apply_review(nodes, older)
    quantum = named(kept, "Quantum Mechanics")
    path_id = TaxonomyNode(name="Quantum Mechanics", level="discipline", path=quantum.path).id
    assert quantum.id == path_id != named(nodes, "Quantum Mechanics").id
    medieval = named(kept, "Medieval History")
    assert medieval.id == TaxonomyNode(name=medieval.name, level="discipline", path=medieval.path).id
    assert named(kept, "Ancient History").id == named(nodes, "Ancient History").id


def test_move_regenerate_and_nested_additions(nodes):
    review = Review(reviewer="ann")
    quantum, history = named(nodes, "Quantum Mechanics"), named(nodes, "History")
    review.decide(quantum.id, "move", new_parent_id=history.id)
    review.decide(named(nodes, "Classical Mechanics").id, "move", new_parent_id=named(nodes, "Humanities").id)
    review.decide(named(nodes, "Chemistry").id, "regenerate", "Chemical Sciences")
    review.add(named(nodes, "Natural Sciences").id, "Life Sciences")
    life = next(a.node_id for a in review.additions)
    review.add(life, "Biology")
    kept = apply_review(nodes, review)
    moved = named(kept, "Quantum Mechanics")
    assert moved.id == quantum.id and moved.parent_id == history.id and moved.path[:2] == ["Humanities", "History"]
    assert named(kept, "Classical Mechanics").path[1] == "Physics"  # a move one level off is not applied
    chemistry, organic = named(kept, "Chemical Sciences"), named(kept, "Organic Chemistry")
    assert chemistry.id != named(nodes, "Chemistry").id and organic.id != named(nodes, "Organic Chemistry").id
    biology = named(kept, "Biology")
    assert biology.level == "discipline" and biology.path == ["Natural Sciences", "Life Sciences", "Biology"]
    review.decide(named(nodes, "Organic Chemistry").id, "move", new_parent_id=life)  # under an added node
    assert named(apply_review(nodes, review), "Organic Chemistry").path[1] == "Life Sciences"
    moved_line = "Natural Sciences / Physics / Quantum Mechanics: keep -> move: under Humanities / History"
    assert moved_line in diff_reviews(Review(), review, nodes)
    review.decide(named(nodes, "Natural Sciences").id, "rename", "Sciences")  # additions keep their ids
    assert named(apply_review(nodes, review), "Biology").id == biology.id


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


# ----- votes, conflicts, versions -----


def _two_reviewers_disagree(nodes) -> tuple[Review, Review]:
    """ann removes Physics and renames History; bob keeps Physics and names History differently."""
    ann, bob = Review(reviewer="ann"), Review(reviewer="bob")
    ann.decide(named(nodes, "Physics").id, "remove")
    ann.decide(named(nodes, "History").id, "rename", "World History")
    bob.decide(named(nodes, "History").id, "rename", "Global History")
    bob.decide(named(nodes, "Chemistry").id, "rename", "Chemical Sciences")
    ann.decide(named(nodes, "Chemistry").id, "rename", "Chemical Sciences")
    return ann, bob


def test_tally_lists_ties_and_rename_disagreements_first(nodes):
    rows = tally(nodes, _two_reviewers_disagree(nodes))
    first = [(r.node.name, r.outcome, bool(r.conflict)) for r in rows[:3]]
    assert first == [
        ("Physics", "keep", True),
        ("History", "keep", True),  # two names, one vote each: a tie keeps the name
        ("Chemistry", "rename: Chemical Sciences", False),
    ]
    physics, history = rows[0], rows[1]
    assert physics.votes == {"ann": "remove", "bob": "keep"} and physics.conflict.startswith("tie")
    assert "rename disagreement" in history.conflict and "World History" in history.conflict
    assert not any(r.conflict or r.contested for r in rows[3:])


def test_a_third_vote_resolves_the_conflict(nodes):
    ann, bob = _two_reviewers_disagree(nodes)
    cid = Review(reviewer="cid")
    cid.decide(named(nodes, "Physics").id, "remove")
    cid.decide(named(nodes, "History").id, "rename", "World History")
    kept = names(apply_review(nodes, merge([ann, bob, cid])))
    assert "Physics" not in kept and "Quantum Mechanics" not in kept and "World History" in kept
    assert not any(r.conflict for r in tally(nodes, [ann, bob, cid])[:2] if r.node.name == "Physics")


def test_each_save_is_a_version_with_its_changes(nodes, tmp_path):
    ann = Review(reviewer="ann")
    ann.decide(named(nodes, "Physics").id, "remove")
    first = save_version(tmp_path, ann, nodes)
    assert (first.version, first.changes) == (1, ["Natural Sciences / Physics: keep -> remove"])
    assert save_version(tmp_path, ann, nodes).version == 1  # same content: no new version
    ann.decide(named(nodes, "Physics").id, "keep")
    ann.add(named(nodes, "History").id, "Medieval History")
    second = save_version(tmp_path, ann, nodes)
    assert second.version == 2
    assert second.changes == [
        "Natural Sciences / Physics: remove -> keep",
        "Medieval History: added under Humanities / History",
    ]
    assert [v.version for v in versions(tmp_path, "ann")] == [1, 2]
    latest = load_reviews(reviews_dir(tmp_path))  # history.jsonl is not a review file
    assert [(r.reviewer, r.version) for r in latest] == [("ann", 2)]
    assert diff_reviews(versions(tmp_path)[0].review, latest[0], nodes) == second.changes


def test_diff_between_two_reviewers_and_manifest_records_the_versions(nodes, tmp_path):
    ann, bob = _two_reviewers_disagree(nodes)
    assert diff_reviews(ann, bob, nodes) == [
        "Humanities / History: rename: World History -> rename: Global History",
        "Natural Sciences / Physics: remove -> keep",
    ]
    for review in (ann, bob, ann):
        save_version(tmp_path, review, nodes)
    ann.decide(named(nodes, "Physics").id, "keep")
    save_version(tmp_path, ann, nodes)
    entry = record_in_manifest(tmp_path, reviews_dir(tmp_path))
    assert entry["versions"] == {"ann": 2, "bob": 1} and entry["status"] == "applied"
    manifest = RunStore(tmp_path).read_manifest()["stages"][MANIFEST_ENTRY]
    assert manifest["content_id"] == merge(load_reviews(reviews_dir(tmp_path))).content_id()


# ----- help: suggestions and duplicates -----

SUGGESTED = json.dumps(
    {
        "items": [
            {"name": "Optics", "description": "Light and its interactions"},
            {"name": "classical mechanics", "description": "already there"},
            {"name": "Thermodynamics", "description": "Heat and work"},
        ]
    }
)


async def test_propose_children_is_cached_costed_and_skips_existing_children(openai_server, make_settings, nodes):
    settings = make_settings(openai_server.base_url, {"taxonomy.n_disciplines": 3})
    physics = named(nodes, "Physics")
    siblings = ["Classical Mechanics", "Quantum Mechanics"]
    openai_server.script(Behavior("ok", content=SUGGESTED))
    first = await propose_children(settings, physics, siblings)
    assert [n.name for n in first.suggestions] == ["Optics", "Thermodynamics"]
    assert first.suggestions[0].path == ["Natural Sciences", "Physics", "Optics"] and not first.cached
    served = openai_server.stats()["count"]
    again = await propose_children(settings, physics, siblings)
    assert again.cached and openai_server.stats()["count"] == served  # the response cache answered
    assert [n.name for n in again.suggestions] == ["Optics", "Thermodynamics"]
    spent = read_ledger(settings.run_dir / "ledger.jsonl")["taxonomy"]  # billed to the taxonomy stage
    assert (spent.calls, spent.cached) == (1, 1) and spent.prompt_tokens > 0
    with pytest.raises(InputError, match="disciplines have no children"):
        await propose_children(settings, named(nodes, "Quantum Mechanics"))


def test_cross_branch_duplicates_by_embedding(tmp_path):
    tree = load_taxonomy_file(DATA / "nested.yaml")
    humanities = named(tree, "History")
    twin = TaxonomyNode(
        name="Quantum mechanics (physics)",
        level="discipline",
        parent_id=humanities.id,
        path=[*humanities.path, "Quantum mechanics (physics)"],
    )
    pairs = cross_branch_duplicates([*tree, twin])
    assert [(p.first.name, p.second.name) for p in pairs] == [("Quantum Mechanics", "Quantum mechanics (physics)")]
    assert pairs[0].similarity >= 0.85
    assert cross_branch_duplicates(tree) == []  # Classical vs Quantum Mechanics share a parent and differ


# ----- the widget -----


def test_widget_builds_rows_lazily_and_filters_a_paper_sized_tree(tmp_path):
    tree = paper_tree()
    widget = ReviewWidget(tree, tmp_path)
    fields = [n for n in tree if n.level == "field"]
    assert len(widget.tree_box.children) == len(fields) == len(widget.rows)  # collapsed: only fields built
    widget.toggle(fields[0].id)
    shown = widget.visible()
    assert len(shown) == len(fields) + len([n for n in tree if n.parent_id == fields[0].id])
    widget.expand_to("discipline")
    assert len(widget.tree_box.children) == len(tree)
    widget.expand_to("field")
    target = next(n for n in tree if n.level == "discipline")
    widget.filter.value = target.name.upper()
    assert [n.name for n in widget.visible()] == target.path  # the match and its ancestors
    assert widget._row(fields[0]).toggle.description == "▾"


def test_widget_counts_per_branch_and_description(nodes, tmp_path):
    widget = ReviewWidget(nodes, tmp_path)
    widget.vote(named(nodes, "Chemistry").id, "remove")
    label = widget.row("Natural Sciences").label.value
    assert "2 children · 3 kept · 3 removed" in label  # Physics + 2 kept; Chemistry + 2 removed
    assert "Carbon compounds" in widget.row("Organic Chemistry").label.value
    assert "<s>Chemistry</s>" in widget.row("Chemistry").label.value


def test_widget_caps_rows_on_a_thousand_nodes(tmp_path):
    widget = ReviewWidget(synthetic_tree(), tmp_path)
    widget.expand_to("discipline")
    assert len(widget.tree_box.children) == MAX_ROWS and f"1000 of 1000 nodes shown (first {MAX_ROWS}" in (
        widget.shown.value
    )
    widget.filter.value = "discipline 89"  # 900 disciplines: 89 and 890..899
    hits = {n.name for n in widget.visible() if n.level == "discipline"}
    assert hits == {"Discipline 89", *(f"Discipline {i}" for i in range(890, 900))}
    assert len(widget.tree_box.children) == len(hits) + 3 + 2  # with their 3 sub-fields and 2 fields


def test_widget_shows_votes_conflicts_first_and_resolves_them(nodes, tmp_path):
    for review in _two_reviewers_disagree(nodes):
        save_version(tmp_path, review, nodes)
    widget = ReviewWidget(nodes, tmp_path, reviewer="cid")
    rows = widget.conflicts.children
    assert [("glan-conflict" in r._dom_classes) for r in rows] == [True, True, False]
    assert "glan-vote-physics" in rows[0]._dom_classes and "ann: remove, bob: keep" in rows[0].children[0].value
    assert ">5</span> disciplines after review (5 before)" in widget.merged.value
    remove = next(b for b in rows[0].children[1:] if "glan-resolve-remove" in b._dom_classes)
    remove.click()
    assert ">3</span> disciplines after review (5 before)" in widget.merged.value  # shown before Save
    name_it = next(b for b in widget.conflicts.children[1].children[1:] if b.description == "name it World History")
    name_it.click()
    widget.save_button.click()
    kept = apply_review(nodes, merge(load_reviews(reviews_dir(tmp_path))))
    assert "Physics" not in names(kept) and "World History" in names(kept)
    widget.diff_a.value, widget.diff_b.value = ("ann", 1), ("cid", 1)
    assert widget.show_diff() == [
        "Natural Sciences / Chemistry: rename: Chemical Sciences -> keep"
    ]  # cid agrees with ann otherwise
    assert "Chemistry" in widget.diff_out.value


async def test_widget_accepts_a_suggested_child(openai_server, make_settings, nodes):
    settings = make_settings(openai_server.base_url, {"taxonomy.n_disciplines": 3})
    widget = ReviewWidget(nodes, settings.run_dir, reviewer="ann", settings=settings)
    openai_server.script(Behavior("ok", content=SUGGESTED))
    physics = widget.row("Physics")
    physics.propose.click()
    suggested = physics.suggestions.children
    assert [s._dom_classes[-1] for s in suggested] == ["glan-suggestion-optics", "glan-suggestion-thermodynamics"]
    assert "2 suggestions for Physics" in widget.status.value
    accept = next(b for b in suggested[0].children if "glan-accept" in b._dom_classes)
    reject = next(b for b in suggested[1].children if "glan-reject" in b._dom_classes)
    accept.click()
    reject.click()
    assert physics.suggestions.children == ()
    widget.save()
    kept = disciplines(apply_review(nodes, merge(load_reviews(reviews_dir(settings.run_dir)))))
    assert "Optics" in names(kept) and "Thermodynamics" not in names(kept)
    assert named(kept, "Optics").description == "Light and its interactions"


def test_widget_keeps_one_of_a_duplicate(nodes, tmp_path):
    history = named(nodes, "History")
    twin = TaxonomyNode(
        name="Organic chemistry", level="discipline", parent_id=history.id, path=[*history.path, "Organic chemistry"]
    )
    widget = ReviewWidget([*nodes, twin], tmp_path)
    assert len(widget.find_duplicates()) == 1
    keep_first = next(b for b in widget.duplicates.children[0].children if "glan-keep-first" in b._dom_classes)
    keep_first.click()
    assert widget.review.decisions[twin.id].action == "remove"
    assert widget.review.decisions.get(named(nodes, "Organic Chemistry").id) is None


def test_a_returning_reviewer_continues_from_their_saved_version(nodes, tmp_path):
    ann = Review(reviewer="ann")
    ann.decide(named(nodes, "Physics").id, "remove")
    save_version(tmp_path, ann, nodes)
    widget = ReviewWidget(nodes, tmp_path)
    widget.reviewer.value = "Ann"
    assert widget.row("Physics").remove.value  # ann's saved vote, loaded
    assert widget.conflicts.children[0].value == "no other reviewer's votes yet"  # her own file is not "another"
    widget.row("Physics").remove.value = False
    widget.save()
    assert [v.version for v in versions(tmp_path, "ann")] == [1, 2]
    assert RunStore(tmp_path).read_manifest()["stages"][MANIFEST_ENTRY]["versions"] == {"Ann": 2}


def test_widget_lists_other_reviewers_additions_to_support(nodes, tmp_path):
    ann = Review(reviewer="ann")
    ann.add(named(nodes, "Physics").id, "Optics", "Light")
    save_version(tmp_path, ann, nodes)
    widget = ReviewWidget(nodes, tmp_path, reviewer="cid")
    assert "Optics (1 of 2 reviewers)" in widget.merged.value  # one of two is not a majority
    row = next(r for r in widget.conflicts.children if "glan-addition-vote" in r._dom_classes)
    assert "Optics</b> added under Natural Sciences / Physics by ann" in row.children[0].value
    row.children[1].click()
    assert "glan-pending" not in widget.merged.value
    assert ">6</span> disciplines after review (5 before)" in widget.merged.value
    assert [(a.name, a.description) for a in widget.review.additions] == [("Optics", "Light")]
    row = next(r for r in widget.conflicts.children if "glan-addition-vote" in r._dom_classes)
    assert "by ann, you" in row.children[0].value and len(row.children) == 1  # nothing left to support


def test_history_lists_saved_versions_and_copied_in_files(nodes, tmp_path):
    ann = Review(reviewer="ann")
    ann.decide(named(nodes, "Physics").id, "remove")
    save_version(tmp_path, ann, nodes)
    bob = Review(reviewer="bob")  # a colleague's file copied in by hand: no history line
    bob.decide(named(nodes, "History").id, "remove")
    bob.save(reviews_dir(tmp_path) / "bob.json")
    frame = history_frame(tmp_path)
    assert frame[["reviewer", "version", "changes"]].values.tolist() == [
        ["ann", 1, "Natural Sciences / Physics: keep -> remove"],
        ["bob", 0, ""],
    ]
    widget = ReviewWidget(nodes, tmp_path)
    assert [label.split(" (")[0] for label, _ in widget.diff_a.options] == ["ann v1", "bob v0"]
    assert widget.show_diff() == ["Humanities / History: keep -> remove", "Natural Sciences / Physics: remove -> keep"]


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


def test_one_person_is_one_vote_a_save_needs_a_name(nodes, tmp_path):
    widget = ReviewWidget(nodes, tmp_path / "outputs" / "r1")
    assert "Review of run r1" in widget.widget.children[0].value  # the header names the run
    widget.row("Chemistry").remove.value = True
    assert widget.save() is None and "type your name" in widget.status.value
    assert not reviews_dir(tmp_path / "outputs" / "r1").exists(), "nothing saved without a name"
    widget.reviewer.value = "Ann"
    assert widget.save() == reviews_dir(tmp_path / "outputs" / "r1") / "ann.json"
    assert [r.reviewer for r in load_reviews(reviews_dir(tmp_path / "outputs" / "r1"))] == ["Ann"]
    with pytest.raises(InputError, match="reviewer's name"):
        save_version(tmp_path, Review(), nodes)


async def test_propose_more_asks_anew_on_each_click(openai_server, make_settings, nodes):
    settings = make_settings(openai_server.base_url, {"taxonomy.n_disciplines": 3})
    openai_server.script(Behavior("ok", content=SUGGESTED))
    widget = ReviewWidget(nodes, settings.run_dir, reviewer="ann", settings=settings)
    physics = named(nodes, "Physics")
    await asyncio.to_thread(widget.propose, physics.id)
    await asyncio.to_thread(widget.propose, physics.id)
    assert openai_server.stats()["count"] == 2, "the second click is a new sample, not the cached reply"
    seeds = [r["seed"] for r in openai_server.requests]
    assert len(set(seeds)) == 2
