"""The data set's quality filter: which QA pairs leave for which reason, counted per discipline.

Not in the paper (GLAN keeps every deduplicated, decontaminated pair): a documented choice, off with
`dataset.quality.enabled: false`. A pair leaves when a regeneration replaced it (`superseded`), when it fails a
rule check (`stages.rules`, recomputed here with `dataset.quality`'s limits, so changing a limit needs no call),
when the quality stage's judge scored it below `min_score`, when a verifier disagreed with its final answer (the
closed-answer check of the quality stage, or the code verifier's `code_checks.jsonl`), or (optionally) when its
question is a *semantic* near-duplicate of an earlier kept one of its discipline: cosine of all-MiniLM-L6-v2
embeddings at or above `semantic_threshold`. Lexical near-duplicates are `data.dedup`'s alone (MinHash LSH). A
pair counts under every reason it has; `removed` counts each pair once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from glan_utils.core.jsonl import iter_jsonl
from glan_utils.core.paths import CODE_CHECKS
from glan_utils.settings import QualityFilterSettings
from glan_utils.stages.rules import DROPPING, RULES, rule_flags
from glan_utils.stages.superseded import superseded_ids

SUPERSEDED, LOW_SCORE, DISAGREED, SEMANTIC = (
    "superseded",
    "low_judge_score",
    "verifier_disagreement",
    "semantic_near_duplicate",
)
REASONS: tuple[str, ...] = (SUPERSEDED, *RULES, LOW_SCORE, DISAGREED, SEMANTIC)
Embedder = Callable[[Sequence[str]], np.ndarray]


def latest_verdicts(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The quality stage's verdict per pair id (the last one written wins), as stored JSON."""
    return {row["pair_id"]: row for row in iter_jsonl(Path(run_dir) / "quality.jsonl")}


def latest_verifications(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Per pair id: the code verifier's latest check (`code_checks.jsonl`, written by `stages.code_checks`)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for row in iter_jsonl(Path(run_dir) / CODE_CHECKS):
        found[row["pair_id"]] = [row["verification"]]
    return found


def verdict_reasons(
    verdict: dict[str, Any] | None, cfg: QualityFilterSettings, extra: list[dict[str, Any]] | None = None
) -> list[str]:
    """The judge and verifier reasons a verdict (and the code verifier's checks) give to drop a pair."""
    checks = [*(verdict or {}).get("verifications", []), *(extra or [])]
    reasons = [LOW_SCORE] if verdict is not None and verdict["score"] < cfg.min_score else []
    if cfg.drop_disagreement and any(v.get("agreed") is False for v in checks):
        reasons.append(DISAGREED)
    return reasons


def pair_reasons(
    pair: dict[str, Any],
    verdict: dict[str, Any] | None,
    gone: set[str],
    cfg: QualityFilterSettings,
    code: list[dict[str, Any]] | None = None,
    flags: list[str] | None = None,
) -> list[str]:
    """Every reason (except semantic duplication, which needs the other pairs) to drop one pair; `flags` are its
    rule flags when the caller has them already."""
    reasons = [SUPERSEDED] if pair["id"] in gone or pair.get("question_id") in gone else []
    dropping = set(DROPPING if cfg.drop_flags is None else cfg.drop_flags)
    reasons += [flag for flag in (rule_flags(pair, cfg) if flags is None else flags) if flag in dropping]
    return reasons + verdict_reasons(verdict, cfg, code)


def semantic_duplicates(vectors: np.ndarray, threshold: float, block: int = 512) -> np.ndarray:
    """Per row, the index of an earlier row with cosine >= threshold (-1 if none): *semantic* near-duplicates.

    Vectors are L2-normalised; rows are compared in blocks against all earlier rows, so memory is
    `block x n` floats, never `n x n`. Every later member of a group points at a row that is not itself a
    duplicate, so the first of each group is the one kept.
    """
    n = len(vectors)
    dup_of = np.full(n, -1, np.int64)
    for start in range(0, n, block):
        rows = vectors[start : start + block]
        sims = rows @ vectors[: start + len(rows)].T
        for offset, row in enumerate(sims):
            i = start + offset
            earlier = np.flatnonzero((row[:i] >= threshold) & (dup_of[:i] < 0))
            if len(earlier):
                dup_of[i] = earlier[0]
    return dup_of


def filter_pairs(
    pairs: Iterable[dict[str, Any]],
    alive: np.ndarray,
    run_dir: Path,
    cfg: QualityFilterSettings,
    embedder: Embedder | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """(removed mask, summary) over `pairs` in file order; only `alive` pairs (kept so far) are judged. The rule
    flags of the pairs kept are counted too (warnings, or every rule while the filter is off), for the card."""
    removed = np.zeros(len(alive), bool)
    verdicts, gone, code = (
        (latest_verdicts(run_dir), superseded_ids(run_dir), latest_verifications(run_dir))
        if cfg.enabled
        else ({}, set(), {})
    )
    by_reason: Counter[str] = Counter()
    flagged_kept: Counter[str] = Counter()
    per_discipline: Counter[tuple[str, str]] = Counter()
    examples: list[dict[str, Any]] = []
    questions: list[tuple[int, str, str]] = []
    for i, pair in enumerate(pairs):
        if not alive[i]:
            continue
        flags = rule_flags(pair, cfg)
        reasons = (
            pair_reasons(pair, verdicts.get(pair["id"]), gone, cfg, code.get(pair["id"]), flags) if cfg.enabled else []
        )
        if reasons:
            removed[i] = True
            _count(pair, reasons, by_reason, per_discipline, examples, verdicts.get(pair["id"]))
            continue
        flagged_kept.update(flags)
        if cfg.semantic_dedup and cfg.enabled:
            questions.append((i, pair["question"], pair["discipline"]))
    if questions:
        _semantic(
            questions,
            (embedder or _default_embedder),
            cfg.semantic_threshold,
            removed,
            by_reason,
            per_discipline,
            examples,
        )
    return removed, _summary(by_reason, per_discipline, examples, int(removed.sum()), flagged_kept)


def _semantic(
    questions: list[tuple[int, str, str]],
    embedder: Embedder,
    threshold: float,
    removed: np.ndarray,
    by_reason: Counter[str],
    per_discipline: Counter[tuple[str, str]],
    examples: list[dict[str, Any]],
) -> None:
    """Semantic near-duplicates within each discipline (comparing across all pairs would be quadratic in the whole
    data set; near-duplicates across disciplines are rare and not what regenerating a branch fixes)."""
    vectors = embedder([text for _, text, _ in questions])
    by_discipline: dict[str, list[int]] = {}
    for k, (_, _, discipline) in enumerate(questions):
        by_discipline.setdefault(discipline, []).append(k)
    for discipline, members in by_discipline.items():
        dup_of = semantic_duplicates(vectors[members], threshold)
        for k, other in zip(members, dup_of, strict=True):
            if other < 0:
                continue
            removed[questions[k][0]] = True
            by_reason[SEMANTIC] += 1
            per_discipline[(discipline, SEMANTIC)] += 1
            if sum(e["reason"] == SEMANTIC for e in examples) < 3:
                examples.append({"reason": SEMANTIC, "text": questions[k][1], "matched": questions[members[other]][1]})


def _count(
    pair: dict[str, Any],
    reasons: list[str],
    by_reason: Counter[str],
    per_discipline: Counter[tuple[str, str]],
    examples: list[dict[str, Any]],
    verdict: dict[str, Any] | None,
) -> None:
    by_reason.update(reasons)
    per_discipline.update((pair["discipline"], r) for r in reasons)
    if sum(e["reason"] == reasons[0] for e in examples) < 3:
        rationale = (verdict or {}).get("rationale", "")
        examples.append({"reason": reasons[0], "record_id": pair["id"], "text": pair["question"], "matched": rationale})


def _summary(
    by_reason: Counter[str],
    per_discipline: Counter[tuple[str, str]],
    examples: list[dict[str, Any]],
    removed: int,
    flagged_kept: Counter[str],
) -> dict[str, Any]:
    rows = [{"discipline": d, "reason": r, "removed": n} for (d, r), n in sorted(per_discipline.items())]
    return {
        "removed": removed,
        "by_reason": {r: by_reason[r] for r in REASONS if by_reason[r]},
        "flagged_kept": {r: flagged_kept[r] for r in RULES if flagged_kept[r]},
        "by_discipline": rows,
        "examples": examples,
    }


def _default_embedder(texts: Sequence[str]) -> np.ndarray:
    from glan_utils.llm.embeddings import embed  # sentence-transformers loads on first use only

    return embed(texts)
