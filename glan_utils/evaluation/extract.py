"""Rule-based answer extraction for the paper protocol of multiple-choice benchmarks (ARC, MMLU).

The GLAN paper scores ARC and MMLU 0-shot from a *generated* answer with rule-based extraction, not by ranking
the choices' log-likelihoods. The rules, in order: an explicit "answer is (B)" / "Answer: B"; a letter that opens
the reply ("B", "(B)", "B."); a parenthesised letter anywhere; the one choice whose text the reply quotes. A
reply that none of them resolves scores 0 (it is not guessed)."""

from __future__ import annotations

import re
from typing import Any

INVALID = "[invalid]"


def choices_of(doc: dict[str, Any]) -> tuple[list[str], list[str], str]:
    """(labels, choice texts, gold label) of an ARC (`choices.label`) or MMLU (`choices` + int `answer`) doc."""
    if isinstance(doc["choices"], dict):
        return list(doc["choices"]["label"]), list(doc["choices"]["text"]), str(doc["answerKey"])
    labels = [chr(ord("A") + i) for i in range(len(doc["choices"]))]
    return labels, list(doc["choices"]), labels[int(doc["answer"])]


def extract_choice(reply: str, labels: list[str], texts: list[str]) -> str:
    """The choice label a free-text reply commits to, or INVALID."""
    letter = "|".join(re.escape(label) for label in labels)
    rules = (
        rf"(?i:answer)(?:\s+is)?\s*[:\-]?\s*\(?({letter})\b",
        rf"^\s*\(?({letter})(?:[\).:]|\s|$)",
        rf"\(({letter})\)",
    )
    for rule in rules:
        match = re.search(rule, reply)
        if match:
            return match.group(1)
    quoted = [label for label, text in zip(labels, texts, strict=True) if text and text.lower() in reply.lower()]
    return quoted[0] if len(quoted) == 1 else INVALID


def process_choice(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """lm-eval `process_results` hook: exact match of the extracted label with the gold one."""
    labels, texts, gold = choices_of(doc)
    return {"exact_match": float(extract_choice(results[0], labels, texts) == gold)}
