"""Export end to end: planted duplicate and contamination removed; HF dataset, JSONL, parquet and card."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from datasets import Dataset, load_from_disk

from glan_utils.core.errors import ConfigError, InputError, SetupError
from glan_utils.core.records import Provenance, QAPair, TaxonomyNode
from glan_utils.data.build import build_dataset, load_report
from glan_utils.data.decontaminate import planted_texts
from glan_utils.data.export import PARQUET_SCHEMA, HfSplitWriter, choose_test, push_to_hub
from glan_utils.data.hashing import string_hashes
from glan_utils.runs.store import RunStore
from glan_utils.settings import ExportSettings, load_settings

GSM8K_TEST = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for "
    "her friends every day with four. She sells the remainder at the farmers' market daily for $2 per "
    "fresh duck egg. How much in dollars does she make every day at the farmers' market?"
)
DISCIPLINES = ("Physics", "Biology", "Economics")


def qa_pair(i: int, question: str | None = None, answer: str | None = None) -> QAPair:
    """A QA pair with distinct, realistic-length text unless given."""
    rng = np.random.default_rng(i)
    words = [f"{w}{k}" for w in ("energy", "cell", "market", "proof", "vector", "enzyme") for k in range(40)]
    discipline = DISCIPLINES[i % 3]
    prov = Provenance(prompt="answer", prompt_hash="hash-a", model="test-model", params={"temperature": 0.7})
    return QAPair(
        question_id=f"q{i}",
        syllabus_id="syl",
        subject_id="sub",
        discipline_id=discipline.lower(),
        field="Sciences",
        subfield="Natural sciences",
        discipline=discipline,
        subject=f"{discipline} I",
        level="undergraduate",
        difficulty="basic" if i % 2 else "challenging",
        session_indices=[1],
        concepts=["c1", "c2"],
        question_type=("derivation or proof", "case analysis")[i % 2],
        question=question or " ".join(rng.choice(words, 30)) + "?",
        answer=answer or " ".join(rng.choice(words, 80)),
        provenance=prov,
        question_provenance=prov.model_copy(update={"prompt": "homework", "prompt_hash": "hash-h"}),
    )


def taxonomy() -> list[TaxonomyNode]:
    """The taxonomy `qa_pair`'s pairs come from, so the run's plan (notebook 05 records it) holds them."""
    field = TaxonomyNode(id="sciences", name="Sciences", level="field", path=["Sciences"])
    path = [field.name, "Natural sciences"]
    subfield = TaxonomyNode(id="natural", name=path[-1], level="subfield", parent_id=field.id, path=path)
    return [
        field,
        subfield,
        *(
            TaxonomyNode(id=d.lower(), name=d, level="discipline", parent_id=subfield.id, path=[*subfield.path, d])
            for d in DISCIPLINES
        ),
    ]


def write_run(run_dir, n: int = 60) -> tuple[RunStore, dict[str, str]]:
    """A run with its taxonomy, n clean pairs plus a planted near duplicate and a planted GSM8K test question."""
    pairs = [qa_pair(i) for i in range(n)]
    twin = pairs[5].question.split()
    twin[-1] = "changed?"
    pairs.append(qa_pair(n, question=" ".join(twin)))
    pairs.append(qa_pair(n + 1, question="Solve: " + GSM8K_TEST))
    store = RunStore(run_dir)
    store.append("taxonomy", taxonomy())
    assert store.append("answers", pairs) == n + 2
    return store, {"clean": pairs[0].id, "near": pairs[n].id, "gsm8k": pairs[n + 1].id}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    store, ids = write_run(tmp_path_factory.mktemp("run") / "demo")
    (store.root / "ledger.jsonl").write_text(
        json.dumps(
            {
                "stage": "answers",
                "cached": False,
                "ok": True,
                "prompt_tokens": 100,
                "completion_tokens": 50,
                "cost_usd": 0.25,
            }
        )
        + "\n",
        encoding="utf-8",
    )
    settings = load_settings(
        None, {"dataset.export.test_per_discipline": 3, "dataset.decontamination.workers": 1}, environ={}
    ).dataset
    report = build_dataset(store, settings, planted_texts([("gsm8k", GSM8K_TEST)]))
    return store, ids, report


def test_planted_records_removed_clean_kept(built):
    store, ids, report = built
    assert (report.records, report.near_duplicates, report.contaminated, report.kept) == (62, 1, 1, 60)
    assert report.benchmarks == {"gsm8k": {"flagged": 1, "removed": 1}}
    kept = set(pq.read_table(store.path("dataset/qa.parquet"), columns=["id"])["id"].to_pylist())
    assert ids["clean"] in kept and ids["near"] not in kept and ids["gsm8k"] not in kept
    reasons = {e.reason for e in report.examples}
    assert reasons == {"near duplicate", "contaminated: gsm8k"}
    assert load_report(store) == report


def test_hf_dataset_reloads_with_stratified_test(built):
    store, _, report = built
    dataset = load_from_disk(str(store.path("dataset/hf")))
    assert set(dataset) == {"train", "test"}
    assert dataset["train"].column_names == [
        "id",
        "messages",
        "question",
        "answer",
        "field",
        "subfield",
        "discipline",
        "subject",
        "level",
        "difficulty",
        "question_type",
        "concepts",
        "language",
        "turns",
    ]
    assert set(dataset["train"]["turns"]) == {1}  # single-turn pairs: one user turn each
    assert (len(dataset["train"]), len(dataset["test"])) == (report.train, report.test) == (51, 9)
    assert sorted(dataset["test"]["discipline"]) == sorted(DISCIPLINES * 3)
    assert not set(dataset["train"]["id"]) & set(dataset["test"]["id"])


def test_jsonl_is_chat_format(built):
    store, _, report = built
    for split, size in (("train", report.train), ("test", report.test)):
        lines = store.path(f"dataset/{split}.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == size
        for line in lines:
            row = json.loads(line)
            assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
            assert row["messages"][0]["content"] == row["question"] and row["messages"][1]["content"] == row["answer"]
            expected = "case analysis" if row["difficulty"] == "basic" else "derivation or proof"  # both by i % 2
            assert row["question_type"] == expected


def test_parquet_and_card(built):
    store, _, report = built
    table = pq.read_table(store.path("dataset/qa.parquet"))
    assert table.num_rows == report.kept
    assert {"split", "answer_prompt_hash", "question_prompt", "session_indices", "syllabus_id"} <= set(
        table.schema.names
    )
    card = store.path("dataset/README.md").read_text(encoding="utf-8")
    header = yaml.safe_load(card.split("---")[1])
    assert header["size_categories"] == ["n<1K"] and header["language"] == ["en"]
    assert {f["split"] for f in header["configs"][0]["data_files"]} == {"train", "test"}
    for expected in ("hash-a", "hash-h", "homework", "Economics", "0.2500", "near duplicates removed"):
        assert expected in card


def test_hf_writer_rolls_shards_and_reloads(tmp_path):
    rows = [{"id": f"r{i}", "question": f"q{i}", "answer": f"a{i}", "concepts": ["c"]} for i in range(30)]
    batch = pa.RecordBatch.from_pylist(rows, PARQUET_SCHEMA)
    writer = HfSplitWriter(tmp_path / "train", "train", max_shard_bytes=1)
    for start in range(0, 30, 10):
        writer.write(batch.slice(start, 10))
    writer.close()
    assert sorted(p.name for p in (tmp_path / "train").glob("*.arrow")) == [
        f"data-0000{i}-of-00003.arrow" for i in range(3)
    ]
    dataset = Dataset.load_from_disk(str(tmp_path / "train"))
    assert dataset["id"] == [r["id"] for r in rows] and dataset.split == "train"
    assert dataset[29]["messages"] == [
        {"role": "user", "content": "q29"},
        {"role": "assistant", "content": "a29"},
    ]


def test_choose_test_is_seeded_and_capped():
    ids = string_hashes(pa.array([f"id{i}" for i in range(100)]))
    disciplines = string_hashes(pa.array(["a"] * 90 + ["b"] * 10))
    settings = ExportSettings(test_per_discipline=8, seed=1)
    picked = choose_test(ids, disciplines, settings)
    assert picked[:90].sum() == 8 and picked[90:].sum() == 5  # capped at half of discipline b
    assert np.array_equal(picked, choose_test(ids, disciplines, settings))
    assert not np.array_equal(picked, choose_test(ids, disciplines, settings.model_copy(update={"seed": 2})))
    fraction = choose_test(ids, disciplines, ExportSettings(test_fraction=0.2))
    assert (fraction[:90].sum(), fraction[90:].sum()) == (18, 2)


def test_settings_errors_are_one_line():
    with pytest.raises(ConfigError, match=r"dataset\.dedup\.threshold"):
        load_settings(None, {"dataset.dedup.threshold": 3}, environ={})
    with pytest.raises(
        ConfigError, match=r"^config error: dataset\.dedupe: unknown key \(did you mean dataset\.dedup\?\)$"
    ):
        load_settings(None, {"dataset.dedupe.threshold": 0.7}, environ={})


def test_yaml_dataset_section_loads_and_overrides(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("dataset:\n  dedup: {threshold: 0.7}\n  export: {test_per_discipline: 7}\n")
    settings = load_settings(path, environ={})
    assert settings.dataset.dedup.threshold == 0.7
    resolved = load_settings(path, {"dataset.export.seed": 3}, environ={}).dataset
    assert (resolved.dedup.threshold, resolved.export.test_per_discipline) == (0.7, 7)
    assert resolved.export.seed == 3
    path.write_text("dataset:\n  export: {tests_per_discipline: 7}\n")
    with pytest.raises(ConfigError) as error:
        load_settings(path, environ={})
    assert str(error.value) == (
        f"config error in {path}: dataset.export.tests_per_discipline: unknown key"
        " (did you mean dataset.export.test_per_discipline?)"
    )


def test_missing_answers_and_token_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(InputError, match=r"answers\.jsonl does not exist"):
        build_dataset(RunStore(tmp_path / "empty"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(SetupError, match="HF_TOKEN"):
        push_to_hub(tmp_path, "user/glan-demo")
