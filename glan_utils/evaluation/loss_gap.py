"""The paper's loss-gap contamination check, Δ% = (L_test − L_train) / L_test, with a bootstrap interval.

L is a model's mean next-token loss over a benchmark split's texts. The paper compares the *train* split with the
test split; no benchmark train split ships offline, so a user may point `evaluation.loss_gap_train` at a local
JSONL per benchmark (the `train-vs-test` form, the paper's); otherwise the validation split is the reference (the
`validation-vs-test` form, labelled as such). Every Δ% carries a 95% bootstrap interval over texts: on a few
items the interval spans tens of points, and a Δ% inside it is noise, not a contamination signal."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from glan_utils.core.errors import InputError
from glan_utils.data.benchmarks import iter_items, splits
from glan_utils.evaluation.stats import bootstrap_interval
from glan_utils.settings.benchmarks import CATALOG
from glan_utils.settings.evaluation import EvalSettings

# Benchmarks the paper's Table 3 checks, plus MMLU (the catalog's `loss_gap`); each with its offline validation split.
LOSS_GAP_BENCHMARKS = tuple(b.name for b in CATALOG if b.loss_gap)
_PAIRS = (("question", "answer"), ("problem", "solution"))  # field pairs a local train file may use
COLUMNS = ["benchmark", "form", "reference", "n_reference", "n_test", "delta_pct", "ci_low", "ci_high", "note"]


@torch.no_grad()
def text_losses(
    model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 4, max_length: int = 1024
) -> np.ndarray:
    """Per text: (summed next-token cross-entropy, token count), padding excluded — shape (len(texts), 2)."""
    if not texts:
        raise InputError("the loss-gap check needs at least one text")
    side, tokenizer.padding_side = tokenizer.padding_side, "right"  # left padding would shift positions
    rows = []
    model.eval()
    try:
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[start : start + batch_size]),
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_length,
            ).to(model.device)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            mask = batch["attention_mask"][:, 1:].float()
            losses = F.cross_entropy(
                logits[:, :-1].float().transpose(1, 2), batch["input_ids"][:, 1:], reduction="none"
            )
            rows += zip((losses * mask).sum(1).tolist(), mask.sum(1).tolist(), strict=True)
    finally:
        tokenizer.padding_side = side
    return np.asarray(rows, dtype=float)


def _mean(losses: np.ndarray) -> float:
    return float(losses[:, 0].sum() / losses[:, 1].sum())


def _gap(reference: np.ndarray, test: np.ndarray) -> float:
    test_loss = _mean(test)
    return (test_loss - _mean(reference)) / test_loss


def mean_token_loss(
    model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 4, max_length: int = 1024
) -> float:
    """Mean next-token cross-entropy over all tokens of `texts` (token-weighted, padding excluded)."""
    return _mean(text_losses(model, tokenizer, texts, batch_size, max_length))


def loss_gap(
    model: Any,
    tokenizer: Any,
    train_texts: Sequence[str],
    test_texts: Sequence[str],
    batch_size: int = 4,
    max_length: int = 1024,
) -> float:
    """Paper's contamination check: Δ = (L_test − L_train) / L_test, a fraction (×100 for Δ%).

    A Δ well below the base model's suggests the test set leaked into training. Works for a base model and a
    fine-tuned (peft) model alike."""
    return _gap(
        text_losses(model, tokenizer, train_texts, batch_size, max_length),
        text_losses(model, tokenizer, test_texts, batch_size, max_length),
    )


def _file_texts(path: Path, limit: int) -> list[str]:
    """Texts of a user's local train split: `text`, or question/answer, or problem/solution fields."""
    if not path.is_file():
        raise InputError(f"loss-gap train file not found: {path}")
    texts = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            row = json.loads(line)
            pair = next(((row[q], row[a]) for q, a in _PAIRS if q in row), None)
            if "text" not in row and pair is None:
                raise InputError(f"{path}:{number}: needs a 'text' field or question/answer or problem/solution")
            texts.append(row["text"] if "text" in row else f"{pair[0]}\n{pair[1]}")
            if len(texts) >= limit:
                break
    return texts


def _split_texts(benchmark: str, split: str, limit: int) -> list[str]:
    return [f"{item.text}\n{item.answer}" for item in iter_items(benchmark, split, limit)]


def _reference(benchmark: str, settings: EvalSettings) -> tuple[str, str, list[str]] | None:
    """(form, reference name, texts): the user's train file, else the validation split, else None."""
    if benchmark in settings.loss_gap_train:
        path = Path(settings.loss_gap_train[benchmark]).expanduser()
        return "train-vs-test (paper)", str(path), _file_texts(path, settings.loss_gap_limit)
    if "validation" in splits(benchmark):
        return "validation-vs-test", "validation", _split_texts(benchmark, "validation", settings.loss_gap_limit)
    return None


def loss_gaps(model: Any, tokenizer: Any, settings: EvalSettings, seed: int = 0) -> pd.DataFrame:
    """One row per benchmark: the form, sizes, Δ% and its 95% bootstrap interval; a benchmark with no reference
    split offline and no train file is listed with a note instead of a number."""
    rows = []
    for benchmark in LOSS_GAP_BENCHMARKS:
        reference = _reference(benchmark, settings)
        if reference is None:
            note = f"skipped: no offline train/validation split; set evaluation.loss_gap_train.{benchmark}"
            rows.append({"benchmark": benchmark, "form": "-", "reference": "-", "note": note})
            continue
        form, name, texts = reference
        ref = text_losses(model, tokenizer, texts)
        test = text_losses(model, tokenizer, _split_texts(benchmark, "test", settings.loss_gap_limit))
        low, high = bootstrap_interval([ref, test], _gap, settings.bootstrap, seed)
        rows.append(
            {
                "benchmark": benchmark,
                "form": form,
                "reference": name,
                "n_reference": len(ref),
                "n_test": len(test),
                "delta_pct": 100 * _gap(ref, test),
                "ci_low": 100 * low,
                "ci_high": 100 * high,
                "note": "",
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)
