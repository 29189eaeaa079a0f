"""Tables for the notebooks: records as DataFrames, stage summaries, and question distinctness per subject.

Distinctness is what the public attempt lacked (one concept sample reused per batch gave near-duplicate
questions): the fraction of questions in a subject that have a near-duplicate among the subject's other
questions, by MinHash estimates of word-shingle Jaccard similarity.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd

from glan_utils.core.records import Question, Record
from glan_utils.llm.ledger import read_ledger
from glan_utils.runs.store import RunStore
from glan_utils.settings import Settings

if TYPE_CHECKING:
    from datasketch import MinHash

NUM_PERM = 64


def frame(records: Iterable[Record]) -> pd.DataFrame:
    """Records as a flat table, provenance dropped, for display."""
    return pd.DataFrame([r.model_dump(mode="json", exclude={"provenance", "question_provenance"}) for r in records])


def records_frame(settings: Settings, stage: str, model: Any = None) -> pd.DataFrame:
    """A stage's stored records as a table."""
    return frame(RunStore(settings.run_dir).iter_records(stage, model))


def failures_frame(settings: Settings, stage: str) -> pd.DataFrame:
    rows = [
        f.model_dump(mode="json", include={"task_id", "reason", "raw"})
        for f in RunStore(settings.run_dir).iter_failures(stage)
    ]
    return pd.DataFrame(rows, columns=["task_id", "reason", "raw"])


def stages_frame(settings: Settings) -> pd.DataFrame:
    """Every stage's manifest entry, with the run's cumulative ledger totals alongside."""
    manifest = RunStore(settings.run_dir).read_manifest().get("stages", {})
    ledger = read_ledger(settings.run_dir / "ledger.jsonl")
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


def shingles(text: str, n: int = 3) -> set[str]:
    """Word n-grams of the lower-cased text (the words themselves for texts shorter than n)."""
    words = re.findall(r"\w+", text.casefold())
    return {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def _minhash(text: str) -> MinHash:
    from datasketch import MinHash  # imported on use: it pulls in scipy, which every notebook would pay for

    sketch = MinHash(num_perm=NUM_PERM, seed=1)
    for gram in shingles(text):
        sketch.update(gram.encode("utf-8"))
    return sketch


def near_duplicate_ids(texts: dict[str, str], threshold: float = 0.7) -> set[str]:
    """Ids whose text has another text at estimated Jaccard >= threshold."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    sketches = {key: _minhash(text) for key, text in texts.items()}
    for key, sketch in sketches.items():
        lsh.insert(key, sketch)
    return {
        key
        for key, sketch in sketches.items()
        if any(other != key and sketch.jaccard(sketches[other]) >= threshold for other in lsh.query(sketch))
    }


def distinctness(questions: Iterable[Question], threshold: float = 0.7) -> pd.DataFrame:
    """Per subject: questions, near-duplicates among them, and the distinct fraction (1 is best)."""
    by_subject: dict[str, dict[str, str]] = {}
    names: dict[str, str] = {}
    for q in questions:
        by_subject.setdefault(q.subject_id, {})[q.id] = q.question
        names[q.subject_id] = q.subject
    rows = []
    for subject_id, texts in by_subject.items():
        dupes = len(near_duplicate_ids(texts, threshold))
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
