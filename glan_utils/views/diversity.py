"""Quality and diversity per taxonomy node (discipline or subject): which branch to fix before fine-tuning.

Per node: the judge's mean score and the share of pairs with a rule flag; the verifier agreement rate; the
*semantic* near-duplicate rate (share of questions the data set's semantic dedup would drop: cosine of
all-MiniLM-L6-v2 embeddings >= threshold with an earlier question of the node) and the mean pairwise cosine
distance of the node's questions; the *lexical* near-duplicate rate (the data set's MinHash definition,
`views.tables.near_duplicate_pairs`); key-concept coverage (share of a syllabus' key concepts used by at least one
question, averaged over the node's syllabi); the question-type mix when questions carry a `question_type`; and
planned vs labelled vs judged difficulty (the planned challenging share, the labelled one, and the share of
pairs labelled challenging that the judge found as hard as labelled, `difficulty_fit` >= 3).

Embeddings are batched and cached on disk by text hash (`llm.embeddings.embed`), so a rerun costs nothing. The
mean pairwise cosine of n normalised vectors is (|sum v|^2 - n) / (n(n-1)): linear in n.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from glan_utils.data.quality_filter import latest_verifications, semantic_duplicates
from glan_utils.runs.store import RunStore
from glan_utils.settings import Settings
from glan_utils.stages.rules import RULES, rule_flags
from glan_utils.stages.superseded import superseded_ids
from glan_utils.views.tables import near_duplicate_pairs

Embedder = Callable[[Sequence[str]], np.ndarray]
LEVELS = {"discipline": ["discipline"], "subject": ["discipline", "subject"]}
NODE_ID = {"discipline": "discipline_id", "subject": "subject_id"}
JUDGED_HARD = 3


def quality_frame(settings: Settings) -> pd.DataFrame:
    """One row per current QA pair: placement, texts, rule flags, and the judge's verdict where there is one."""
    store = RunStore(settings.run_dir)
    gone = superseded_ids(settings.run_dir)
    verdicts = {v.pair_id: v for v in store.iter_records("quality")} if store.records_path("quality").exists() else {}
    code = latest_verifications(settings.run_dir)
    rows = []
    for pair in store.iter_records("answers"):
        if pair.id in gone:
            continue
        verdict = verdicts.get(pair.id)
        checks = [v.agreed for v in verdict.verifications] if verdict else []
        checks += [v["agreed"] for v in code.get(pair.id, [])]
        rows.append(
            {
                "id": pair.id,
                "discipline_id": pair.discipline_id,
                "subject_id": pair.subject_id,
                "syllabus_id": pair.syllabus_id,
                "discipline": pair.discipline,
                "subject": pair.subject,
                "difficulty": pair.difficulty,
                "question_type": getattr(pair, "question_type", None),
                "concepts": pair.concepts,
                "question": pair.question,
                "answer": pair.answer,
                "flags": rule_flags(pair.model_dump(), settings.dataset.quality),
                "score": verdict.score if verdict else np.nan,
                "difficulty_fit": verdict.scores.get("difficulty_fit", np.nan) if verdict else np.nan,
                "rationale": verdict.rationale if verdict else "",
                "verified": any(c is not None for c in checks),
                "agreed": all(c is not False for c in checks) if any(c is not None for c in checks) else None,
            }
        )
    return pd.DataFrame(rows)


def verifier_agreement(frame: pd.DataFrame) -> dict[str, Any]:
    """How many closed answers were checked, how many agreed, and the agreement rate (None when none)."""
    checked = frame[frame["verified"]] if len(frame) else frame
    agreed = int(checked["agreed"].astype(bool).sum()) if len(checked) else 0
    return {"checked": len(checked), "agreed": agreed, "rate": agreed / len(checked) if len(checked) else None}


def flag_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Pairs per rule flag and discipline (every flag listed, zero when none failed it)."""
    exploded = frame[["discipline", "flags"]].explode("flags").dropna() if len(frame) else frame
    counts = exploded.groupby(["flags", "discipline"]).size().unstack(fill_value=0) if len(exploded) else None
    table = pd.DataFrame(index=list(RULES)) if counts is None else counts.reindex(list(RULES), fill_value=0)
    return table.rename_axis("flag")


def lowest_pairs(frame: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The `n` pairs the judge scored lowest (rule-flagged pairs first among equals), with rationale and flags."""
    if not len(frame):
        return frame
    table = frame.assign(flag_count=frame["flags"].map(len)).sort_values(
        ["score", "flag_count"], ascending=[True, False]
    )
    columns = ["discipline", "subject", "difficulty", "score", "flags", "rationale", "agreed", "question", "answer"]
    return table[columns].head(n).reset_index(drop=True)


def mean_cosine_distance(vectors: np.ndarray) -> float:
    """1 - mean cosine over distinct pairs of normalised vectors (NaN below two vectors)."""
    n = len(vectors)
    if n < 2:
        return float("nan")
    total = vectors.sum(axis=0, dtype=np.float64)
    return float(1 - (total @ total - n) / (n * (n - 1)))


def concept_coverage(frame: pd.DataFrame, syllabi: pd.DataFrame) -> pd.Series:
    """Per syllabus id: share of its key concepts that at least one of its questions uses."""
    used = frame.groupby("syllabus_id")["concepts"].agg(lambda lists: {c for cs in lists for c in cs})
    planned = syllabi.set_index("id")["sessions"].map(lambda ss: {c for s in ss for c in s["key_concepts"]})
    shared = planned.index.intersection(used.index)
    return pd.Series({i: len(planned[i] & used[i]) / len(planned[i]) for i in shared if planned[i]}, dtype=float)


def node_table(
    frame: pd.DataFrame,
    syllabi: pd.DataFrame,
    settings: Settings,
    level: str = "discipline",
    embedder: Embedder | None = None,
) -> pd.DataFrame:
    """Quality and diversity per discipline (or per discipline and subject): one row per node."""
    if not len(frame):
        return pd.DataFrame()
    keys = LEVELS[level]
    frame = frame.reset_index(drop=True)
    vectors = (embedder or _embed)(frame["question"].tolist())
    frame = frame.assign(lexical_duplicate=_lexical_duplicates(frame, keys, settings))
    coverage = concept_coverage(frame, syllabi) if len(syllabi) else pd.Series(dtype=float)
    rows = []
    for node, group in frame.groupby(keys, sort=True):
        names = dict(zip(keys, node if isinstance(node, tuple) else (node,), strict=True))
        node_id = {"node_id": group[NODE_ID[level]].iloc[0]} if NODE_ID[level] in group else {}
        rows.append(names | node_id | _node_row(group, vectors[group.index.to_numpy()], coverage, settings))
    return pd.DataFrame(rows)


def _node_row(group: pd.DataFrame, vectors: np.ndarray, coverage: pd.Series, settings: Settings) -> dict[str, Any]:
    threshold = settings.dataset.quality.semantic_threshold
    challenging = group["difficulty"] == "challenging"
    judged_hard = challenging & (group["difficulty_fit"] >= JUDGED_HARD)
    agreement = verifier_agreement(group)
    row = {
        "pairs": len(group),
        "mean_score": group["score"].mean(),
        "flagged_share": (group["flags"].map(len) > 0).mean(),
        "verifier_agreement": agreement["rate"],
        "semantic_near_duplicate_rate": float((semantic_duplicates(vectors, threshold) >= 0).mean()),
        "mean_cosine_distance": mean_cosine_distance(vectors),
        "lexical_near_duplicate_rate": group["lexical_duplicate"].mean(),
        "concept_coverage": coverage.reindex(group["syllabus_id"].unique()).mean(),
        "planned_challenging": settings.questions.challenging_ratio,
        "labelled_challenging": challenging.mean(),
        "judged_challenging": judged_hard.mean() if group["difficulty_fit"].notna().any() else np.nan,
    }
    types = group["question_type"].dropna()
    if len(types):
        row |= {f"type_{name}": share for name, share in types.value_counts(normalize=True).items()}
    return row


def _lexical_duplicates(frame: pd.DataFrame, keys: list[str], settings: Settings) -> np.ndarray:
    """Per row: whether it has a lexical near-duplicate in its own node (one dedup pass over all questions; a
    group spanning nodes counts only its members that share the node of the text they duplicate)."""
    node = frame[keys].astype(str).agg("\x1f".join, axis=1).to_numpy()
    marked = np.zeros(len(frame), bool)
    for dup, kept in near_duplicate_pairs(frame["question"].tolist(), settings.dataset.dedup):
        if node[dup] == node[kept]:
            marked[[dup, kept]] = True
    return marked


def _embed(texts: Sequence[str]) -> np.ndarray:
    from glan_utils.llm.embeddings import embed  # sentence-transformers loads on first use only

    return embed(texts)
