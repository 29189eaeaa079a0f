"""Stage 6, the data set: dedup -> decontaminate -> quality -> export (+ card), from a run's `answers.jsonl`.

Only the pairs of the run's current plan (`plan.json`, `outside_plan.json`) go in, train and GLAN-Test alike,
under their disciplines' current names: a pair of a discipline the taxonomy or its review no longer keeps is
left out as `not_in_taxonomy`; one of a subject, syllabus or question slot the current settings no longer plan,
as `outside_plan`. The report, the card and the manifest say how many, and which taxonomy and review version the
data set was built from.

Each step streams the records once and leaves its result in `<run>/dataset.work/` (a few bytes per record), so
the steps can run in separate processes (the scale benchmark does) and memory stays flat as the record count
grows. The quality step (`data.quality_filter`, not in the paper) drops pairs by rule flags, judge score, verifier
disagreement, regeneration and optionally semantic near-duplication. `build_dataset` runs all four and returns
the `DatasetReport` also saved as `dataset/report.json`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from glan_utils.core.errors import ConfigError, InputError
from glan_utils.core.jsonl import iter_jsonl
from glan_utils.core.paths import DATASET, DATASET_REPORT
from glan_utils.data.card import write_card
from glan_utils.data.decontaminate import (
    BenchmarkIndex,
    BenchmarkText,
    benchmark_texts,
    item_text,
    load_index,
    scan,
)
from glan_utils.data.dedup import EXACT, KEPT, NEAR, DedupResult, find_duplicates
from glan_utils.data.export import flat_row, write_splits, write_table
from glan_utils.data.followups import assistant_turns, attach_followups, followup_messages, user_turns
from glan_utils.data.quality_filter import filter_pairs
from glan_utils.runs.store import RunStore
from glan_utils.settings import DatasetSettings
from glan_utils.stages.questions import read_outside_plan
from glan_utils.stages.selection import read_plan

STEPS = ("dedup", "decontaminate", "quality", "export")
NOT_IN_TAXONOMY, OUTSIDE_PLAN = "not_in_taxonomy", "outside_plan"  # why a stored pair is not in the plan
TextSource = Callable[[], Iterable[BenchmarkText]]


class Removal(BaseModel):
    """An example of a removed record and what it was removed for."""

    reason: str
    record_id: str
    text: str
    matched: str = Field(description="The kept duplicate, or the benchmark text it overlaps.")
    detail: str


class DatasetReport(BaseModel):
    """What the data set step did: counts, per-benchmark figures, examples, timings, output paths."""

    run_dir: str
    records: int
    exact_duplicates: int
    near_duplicates: int
    contaminated: int
    quality_removed: int = 0
    kept: int
    train: int
    test: int
    lsh: str
    ngram: int
    benchmarks: dict[str, dict[str, int]]
    examples: list[Removal]
    counts: list[dict[str, Any]]
    quality: dict[str, Any] = Field(default_factory=dict, description="Quality removals by reason and discipline.")
    excluded: dict[str, int] = Field(default_factory=dict, description="Stored pairs left out of the plan, by reason.")
    built_from: dict[str, Any] = Field(default_factory=dict, description="The taxonomy and review versions used.")
    steps: dict[str, dict[str, float]]
    settings: dict[str, Any]
    dataset_dir: str


class PlanFilter:
    """Which stored pairs the run's current plan has, and the current names of their field, sub-field and
    discipline (a run without `plan.json`, made before plans were recorded, keeps every pair)."""

    def __init__(self, run_dir: Path) -> None:
        plan = read_plan(run_dir)
        self.disciplines: dict[str, list[str]] | None = plan.get("disciplines")
        self.subjects = set(plan["subjects"]) if plan.get("subjects") is not None else None
        self.outside = read_outside_plan(run_dir)
        self.version = {"taxonomy_version": plan.get("taxonomy_version"), "review": plan.get("review")}
        self.left_out: Counter[str] = Counter()

    def reason(self, row: dict[str, Any]) -> str | None:
        """Why a pair is left out (None: it is in the plan)."""
        if self.disciplines is not None and row.get("discipline_id") not in self.disciplines:
            return NOT_IN_TAXONOMY
        if self.subjects is not None and row.get("subject_id") not in self.subjects:
            return OUTSIDE_PLAN
        return OUTSIDE_PLAN if row.get("question_id") in self.outside else None

    def rows(self, stored: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The stored pairs in the plan, under current names; the others are counted in `left_out` by reason."""
        for row in stored:
            if reason := self.reason(row):
                self.left_out[reason] += 1
            else:
                yield self.named(row)

    def named(self, row: dict[str, Any]) -> dict[str, Any]:
        """The pair under its discipline's current path (a rename or a move shows in the data set)."""
        path = (self.disciplines or {}).get(row.get("discipline_id", ""), [])
        return row | dict(zip(("field", "subfield", "discipline")[-len(path) :], path, strict=True)) if path else row


def _stored_answers(store: RunStore) -> Iterator[dict[str, Any]]:
    path = store.records_path("answers")
    if not path.exists():
        raise InputError(f"no QA pairs to build a data set from: {path} does not exist (run the answers stage)")
    return iter_jsonl(path)


def conversations(store: RunStore, settings: DatasetSettings) -> Iterator[dict[str, Any]]:
    """The stored QA pairs, each with the follow-up messages the data set keeps (see `data.followups`)."""
    return attach_followups(iter_answers(store), followup_messages(store, settings.quality))


def iter_answers(store: RunStore, plan: PlanFilter | None = None) -> Iterator[dict[str, Any]]:
    """The plan's QA pairs as plain dicts, in file order (no per-record validation: millions must stream fast);
    `plan` counts what it leaves out."""
    return (plan or PlanFilter(store.root)).rows(_stored_answers(store))


def _work(store: RunStore) -> Path:
    path = store.path("dataset.work")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _texts_at(store: RunStore, wanted: set[int]) -> dict[int, dict[str, Any]]:
    """The records at the given positions; stops reading at the last one."""
    found: dict[int, dict[str, Any]] = {}
    for position, row in enumerate(iter_answers(store)):
        if len(found) == len(wanted) or position > max(wanted, default=-1):
            break
        if position in wanted:
            found[position] = row
    return found


def _dedup_step(store: RunStore, settings: DatasetSettings, work: Path, _: TextSource | None) -> dict[str, Any]:
    plan = PlanFilter(store.root)
    result = find_duplicates((r["question"] for r in iter_answers(store, plan)), settings.dedup, work / "minhash")
    result.save(work / "dedup.npz")
    shown = [int(i) for code in (EXACT, NEAR) for i in np.flatnonzero(result.reason == code)[: settings.examples]]
    rows = _texts_at(store, set(shown) | {int(result.dup_of[i]) for i in shown})
    examples = [
        Removal(
            reason="exact duplicate" if result.reason[i] == EXACT else "near duplicate",
            record_id=rows[i]["id"],
            text=rows[i]["question"],
            matched=rows[int(result.dup_of[i])]["question"],
            detail=f"estimated Jaccard {result.similarity[i]:.2f}",
        ).model_dump()
        for i in shown
    ]
    return {
        "records": len(result.reason),
        "excluded": dict(plan.left_out),
        "built_from": plan.version,
        "exact_duplicates": result.count(EXACT),
        "near_duplicates": result.count(NEAR),
        "lsh": f"{result.bands} bands x {result.rows} rows, "
        f"{settings.dedup.num_perm} permutations, threshold {settings.dedup.threshold}",
        "examples": examples,
    }


def _decontaminate_step(
    store: RunStore, settings: DatasetSettings, work: Path, texts: TextSource | None
) -> dict[str, Any]:
    cfg = settings.decontamination
    alive = DedupResult.load(work / "dedup.npz").reason == KEPT
    if not cfg.enabled:
        np.save(work / "contaminated.npy", np.zeros(len(alive), bool))
        return {"records": len(alive), "contaminated": 0, "benchmarks": {}, "examples": []}
    index = BenchmarkIndex.from_texts(texts(), cfg.ngram) if texts else load_index(cfg)
    turns = (("\n".join(user_turns(r)), "\n".join(assistant_turns(r))) for r in conversations(store, settings))
    result = scan(turns, index, cfg)
    removed = result.contaminated(cfg.min_matches) & alive
    np.save(work / "contaminated.npy", removed)
    ids = {i: r["id"] for i, r in _texts_at(store, {e.record for e in result.examples}).items()}
    examples = []
    for ex in result.examples:
        source_texts = texts() if texts else benchmark_texts(*ex.source.split(":"))
        examples.append(
            Removal(
                reason=f"contaminated: {ex.source.split(':')[0]}",
                record_id=ids[ex.record],
                text=ex.text,
                matched=item_text(source_texts, ex.source, ex.item),
                detail=f"{ex.matches} shared {cfg.ngram}-grams with {ex.source} item {ex.item} "
                f"(in the {ex.where})" + ("" if removed[ex.record] else "; not removed"),
            ).model_dump()
        )
    return {
        "records": len(alive),
        "contaminated": int(removed.sum()),
        "index_ngrams": len(index),
        "benchmarks": result.per_benchmark(cfg.min_matches, alive),
        "examples": examples,
    }


def _quality_step(store: RunStore, settings: DatasetSettings, work: Path, _: TextSource | None) -> dict[str, Any]:
    alive = DedupResult.load(work / "dedup.npz").reason == KEPT
    alive &= ~np.load(work / "contaminated.npy")
    removed, summary = filter_pairs(iter_answers(store), alive, store.root, settings.quality)
    np.save(work / "quality.npy", removed)
    return {"records": len(alive), **summary}


def _export_step(store: RunStore, settings: DatasetSettings, work: Path, _: TextSource | None) -> dict[str, Any]:
    keep = DedupResult.load(work / "dedup.npz").reason == KEPT
    keep &= ~np.load(work / "contaminated.npy")
    keep &= ~np.load(work / "quality.npy")
    out_dir = store.path("dataset")
    out_dir.mkdir(parents=True, exist_ok=True)
    kept_rows = (flat_row(r) for i, r in enumerate(conversations(store, settings)) if keep[i])
    kept = write_table(kept_rows, work / "kept.parquet", settings.export.chunk_size)
    sizes = write_splits(work / "kept.parquet", out_dir, settings.export)
    (work / "kept.parquet").unlink()
    return {"records": len(keep), "kept": kept, **sizes}


_STEP_FUNCTIONS = {
    "dedup": _dedup_step,
    "decontaminate": _decontaminate_step,
    "quality": _quality_step,
    "export": _export_step,
}


def run_step(store: RunStore, settings: DatasetSettings, step: str, texts: TextSource | None = None) -> dict[str, Any]:
    """Run one step (reading earlier steps' results from the work dir); its summary is saved as `<step>.json`.

    `texts` replaces the offline benchmark loaders with other benchmark texts (e.g. planted ones in tests).
    """
    if step not in _STEP_FUNCTIONS:
        raise ConfigError(f"unknown data set step {step!r}; choose from {', '.join(STEPS)}")
    work = _work(store)
    start = time.perf_counter()
    summary = _STEP_FUNCTIONS[step](store, settings, work, texts)
    seconds = time.perf_counter() - start
    summary["timing"] = {
        "seconds": seconds,
        "records_per_s": summary["records"] / seconds if seconds else 0.0,
    }
    (work / f"{step}.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def write_report(store: RunStore, settings: DatasetSettings) -> DatasetReport:
    """Assemble the steps' summaries into the report, write the dataset card and `dataset/report.json`."""
    work = _work(store)
    dedup, decontam, quality, export = (json.loads((work / f"{s}.json").read_text(encoding="utf-8")) for s in STEPS)
    report = DatasetReport(
        run_dir=str(store.root),
        records=dedup["records"],
        exact_duplicates=dedup["exact_duplicates"],
        near_duplicates=dedup["near_duplicates"],
        contaminated=decontam["contaminated"],
        quality_removed=quality["removed"],
        kept=export["kept"],
        train=export["train"],
        test=export["test"],
        lsh=dedup["lsh"],
        ngram=settings.decontamination.ngram,
        benchmarks=decontam["benchmarks"],
        examples=dedup["examples"] + decontam["examples"] + [_quality_example(e) for e in quality["examples"]],
        counts=[],
        quality={k: quality[k] for k in ("by_reason", "by_discipline")},
        excluded=dedup.get("excluded", {}),
        built_from=dedup.get("built_from", {}),
        steps={s: summary["timing"] for s, summary in zip(STEPS, (dedup, decontam, quality, export), strict=True)},
        settings=settings.model_dump(mode="json"),
        dataset_dir=str(store.path("dataset")),
    )
    stats = write_card(store.path(DATASET), report.model_dump(), store.root, settings.license, settings.pretty_name)
    report.counts = [
        {k: v for k, v in row.items() if k != "id_count"} | {"records": row["id_count"]} for row in stats["counts"]
    ]
    (store.path(DATASET) / DATASET_REPORT).write_text(report.model_dump_json(indent=2), encoding="utf-8")
    store.update_manifest(
        "dataset",
        status="complete",
        records=report.records,
        kept=report.kept,
        train=report.train,
        test=report.test,
        excluded=report.excluded,
        **report.built_from,
    )
    return report


def _quality_example(example: dict[str, Any]) -> dict[str, Any]:
    return Removal(
        reason=f"quality: {example['reason']}",
        record_id=example.get("record_id", ""),
        text=example["text"],
        matched=example.get("matched", ""),
        detail="judge rationale" if example.get("matched") and "record_id" in example else "",
    ).model_dump()


def build_dataset(
    store: RunStore, settings: DatasetSettings | None = None, texts: TextSource | None = None
) -> DatasetReport:
    """Dedup, decontaminate, quality-filter and export a run's QA pairs; writes `dataset/`, returns the report."""
    settings = settings or DatasetSettings()
    for step in STEPS:
        run_step(store, settings, step, texts)
    return write_report(store, settings)


def load_report(store: RunStore) -> DatasetReport:
    """The report of the last `build_dataset` of this run."""
    path = store.path(DATASET) / DATASET_REPORT
    if not path.exists():
        raise InputError(f"no data set report at {path}: run build_dataset first")
    return DatasetReport.model_validate_json(path.read_text(encoding="utf-8"))
