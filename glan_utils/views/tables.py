"""Tables for the notebooks: records as DataFrames, stage summaries, and question distinctness per subject.

Distinctness is what the public attempt lacked (one concept sample reused per batch gave near-duplicate
questions): the fraction of questions in a subject that have a near-duplicate among the subject's other
questions, by the data set's own definition (`data.dedup`). Quality and diversity per taxonomy node are in
`views.diversity`.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from glan_utils.core.paths import LEDGER
from glan_utils.core.records import Question, Record
from glan_utils.llm.ledger import read_ledger
from glan_utils.runs.store import RunStore
from glan_utils.settings import DedupSettings, Settings
from glan_utils.stages.selection import kept_disciplines, kept_records
from glan_utils.stages.subjects import STAGE_ROUNDS, SubjectRound


def frame(records: Iterable[Record]) -> pd.DataFrame:
    """Records as a flat table, provenance dropped, for display."""
    return pd.DataFrame([r.model_dump(mode="json", exclude={"provenance", "question_provenance"}) for r in records])


def records_frame(settings: Settings, stage: str, model: Any = None) -> pd.DataFrame:
    """A stage's stored records as a table."""
    return frame(RunStore(settings.run_dir).iter_records(stage, model))


def subject_rounds(settings: Settings) -> pd.DataFrame:
    """Per sampling round and its focus: subjects proposed, and kept subjects it proposed first or at all (over
    the kept disciplines), so a cap that drops whole rounds or a focus that adds nothing shows up."""
    cfg, kept = settings.subjects, {d.id for d in kept_disciplines(settings)}
    proposed = Counter[int]()
    for rec in RunStore(settings.run_dir).iter_records(STAGE_ROUNDS, SubjectRound):
        if rec.discipline_id in kept:
            proposed[rec.round] += len(rec.proposals)
    first, any_round = Counter[int](), Counter[int]()
    for subject in kept_records(settings, "subjects"):
        first[min(subject.rounds)] += 1
        any_round.update(subject.rounds)
    rows = [
        {
            "round": r,
            "focus": cfg.focuses[r % len(cfg.focuses)] if cfg.focuses else "",
            "proposed": proposed[r],
            "kept_first_proposed_here": first[r],
            "kept_proposed_here": any_round[r],
        }
        for r in range(cfg.rounds)
    ]
    return pd.DataFrame(rows, columns=["round", "focus", "proposed", "kept_first_proposed_here", "kept_proposed_here"])


def failures_frame(settings: Settings, stage: str) -> pd.DataFrame:
    rows = [
        f.model_dump(mode="json", include={"task_id", "reason", "raw"})
        for f in RunStore(settings.run_dir).iter_failures(stage)
    ]
    return pd.DataFrame(rows, columns=["task_id", "reason", "raw"])


def stages_frame(settings: Settings) -> pd.DataFrame:
    """Every stage's manifest entry, with the run's cumulative ledger totals alongside."""
    manifest = RunStore(settings.run_dir).read_manifest().get("stages", {})
    ledger = read_ledger(settings.run_dir / LEDGER)
    rows = []
    for stage, info in manifest.items():
        totals = ledger.get(stage)
        rows.append(
            {
                "stage": stage,
                **{k: v for k, v in info.items() if k not in ("stage",)},
                "ledger_calls_total": totals.calls if totals else 0,
                "ledger_cost_usd_total": round(totals.cost_usd, 4) if totals else 0.0,
            }
        )
    return pd.DataFrame(rows).set_index("stage") if rows else pd.DataFrame()


def near_duplicate_pairs(texts: list[str], dedup: DedupSettings | None = None) -> list[tuple[int, int]]:
    """(duplicate, the kept text it duplicates) index pairs by the data set's definition (`data.dedup`)."""
    from glan_utils.data.dedup import KEPT, find_duplicates  # numpy/pyarrow/datasketch: imported on use

    with tempfile.TemporaryDirectory(prefix="glan-dedup-") as work:
        result = find_duplicates(texts, dedup or DedupSettings(), Path(work))
    return [(int(i), int(result.dup_of[i])) for i in np.flatnonzero(result.reason != KEPT)]


def near_duplicate_ids(texts: dict[str, str], dedup: DedupSettings | None = None) -> set[str]:
    """Ids whose text has a lexical near-duplicate (or exact duplicate) among the others.

    The one definition of the project: `data.dedup.find_duplicates` with the data set's settings (MinHash LSH over
    word 3-grams, 128 permutations, estimated Jaccard >= 0.8), so the notebook shows what the data set removes;
    here both members of a group count, where the data set keeps the first.
    """
    keys = list(texts)
    return {keys[k] for pair in near_duplicate_pairs([texts[k] for k in keys], dedup) for k in pair}


def distinctness(questions: Iterable[Question], dedup: DedupSettings | None = None) -> pd.DataFrame:
    """Per subject: questions, lexical near-duplicates among them, and the distinct fraction (1 is best)."""
    by_subject: dict[str, dict[str, str]] = {}
    names: dict[str, str] = {}
    for q in questions:
        by_subject.setdefault(q.subject_id, {})[q.id] = q.question
        names[q.subject_id] = q.subject
    rows = []
    for subject_id, texts in by_subject.items():
        dupes = len(near_duplicate_ids(texts, dedup))
        rows.append(
            {
                "subject": names[subject_id],
                "questions": len(texts),
                "near_duplicates": dupes,
                "distinct_fraction": 1 - dupes / len(texts),
            }
        )
    return pd.DataFrame(rows, columns=["subject", "questions", "near_duplicates", "distinct_fraction"])


def truncation_by_difficulty(settings: Settings) -> pd.DataFrame:
    """Per stage (questions, answers) and difficulty: how often a reply was cut at its budget.

    `rescued`: cut once, then kept thanks to the one retry with a larger budget (its record names the larger
    `max_tokens`); `failed`: cut again, still without a record. Both bias the data toward short, easy items
    when they are frequent, which is why they are shown by difficulty.
    """
    from glan_utils.stages import questions as question_stage  # views sit above stages; loaded on use
    from glan_utils.stages.bounds import budget

    store = RunStore(settings.run_dir)
    asked = {q.id: q.difficulty for q in store.iter_records("questions")}
    planned = {t.id: t.draw.difficulty for t in question_stage.question_tasks(settings)}
    rows = []
    for stage, difficulty_of in (("questions", planned), ("answers", asked)):
        base = budget(settings, getattr(settings, stage))["max_tokens"]
        records = list(store.iter_records(stage))
        done = {r.task_id for r in records}
        cut = {f.task_id for f in store.iter_failures(stage) if "max_tokens" in f.reason and f.task_id not in done}
        tasks = [(r.task_id, bool(r.provenance and r.provenance.params.get("max_tokens", 0) > base)) for r in records]
        tasks += [(task_id, False) for task_id in cut]
        for task_id, rescued in tasks:
            rows.append(
                {
                    "stage": stage,
                    "difficulty": difficulty_of.get(task_id, "unknown"),
                    "rescued": bool(rescued),
                    "failed": task_id in cut,
                }
            )
    table = pd.DataFrame(rows, columns=["stage", "difficulty", "rescued", "failed"])
    summary = table.groupby(["stage", "difficulty"]).agg(
        tasks=("rescued", "size"), rescued=("rescued", "sum"), failed=("failed", "sum")
    )
    summary["truncation_rate"] = (summary["rescued"] + summary["failed"]) / summary["tasks"]
    summary["failure_rate"] = summary["failed"] / summary["tasks"]
    return summary.reset_index()
