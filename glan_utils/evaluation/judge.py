"""GLAN-Test: the evaluated models answer held-out generated questions and an LLM judge scores the answers.

The paper scores 6,300 held-out questions (50 per discipline) *pairwise*: GPT-4 gives two models' answers to one
question a 1-10 score each, in both orders to cancel position bias, and the report is the score difference per
discipline. That is the `pairwise` view here (`judge_pairwise.jinja`). The `reference` view grades each answer on
its own against the generator's answer (`judge.jinja`); that answer is unverified, so this view measures agreement
with the data generator, and is shown second. Questions come from the exported data set's `test` split; answers
from each model (a local checkpoint through transformers, or an endpoint through the project's LLM client), with
their own budget `evaluation.judge_max_tokens` (the references are full solutions); the judge is
`evaluation.judge_model` (else the quality judge), asked for a pydantic verdict, and a warning says when it is the
data generator, which may favour the tuned model's style. A failed judge call keeps the row with its error. Texts
too long for the judge's context window (`llm/context.py`) are trimmed to fit, head and end kept, and the row's
`trimmed` names them."""

from __future__ import annotations

import asyncio
import warnings
from itertools import chain, zip_longest
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from glan_utils.core.aio import run
from glan_utils.core.errors import InputError
from glan_utils.core.jsonl import iter_jsonl
from glan_utils.core.paths import DATASET
from glan_utils.evaluation.harness import ModelSpec, load_hf_model
from glan_utils.evaluation.stats import bootstrap_interval
from glan_utils.llm.context import render_fitted
from glan_utils.llm.prompts import RenderedPrompt
from glan_utils.runs.client import run_client
from glan_utils.settings import Settings

VERDICT_TOKENS = 256  # room left in the judge's context window for its verdict (scores and one sentence)


class PairVerdict(BaseModel):
    """The judge's scores for two answers to one question, in the order shown."""

    score_1: int = Field(ge=1, le=10, description="Assistant 1: 1 = wrong or empty, 10 = correct, complete, clear.")
    score_2: int = Field(ge=1, le=10, description="Assistant 2, same scale.")
    reason: str = Field(max_length=300, description="One sentence.")


class JudgeVerdict(BaseModel):
    """The judge's grade for one answer."""

    score: int = Field(ge=1, le=10, description="1 = wrong or empty, 10 = as good as the reference.")
    correct: bool = Field(description="Whether the final answer agrees with the reference.")
    reason: str = Field(max_length=300, description="One sentence.")


class JudgeIsGeneratorWarning(UserWarning):
    """GLAN-Test is judged by the model that generated the training data."""


def judge_settings(settings: Settings) -> Settings:
    """The settings the GLAN-Test judge calls with: `evaluation.judge_model` (else the quality stage's judge,
    `quality.model`, when one is configured) and `judge_base_url` (else `quality.base_url`) in place of the
    generator's; warns when the judge is the generator (the paper's setup had the same bias)."""
    evaluation, quality, llm = settings.evaluation, settings.quality, settings.llm
    model = evaluation.judge_model or quality.model
    base_url = evaluation.judge_base_url or (quality.base_url if not evaluation.judge_model else None)
    update: dict[str, Any] = {"model": model} if model else {}
    if base_url:
        update |= {"base_url": base_url, "base_urls": []}
    judge_llm = llm.model_copy(update=update)
    if judge_llm.model == llm.model:
        warnings.warn(
            f"GLAN-Test's judge is the data generator ({llm.model or 'the embedded model'}): it may favour answers "
            "in its own style, i.e. the tuned model's; set evaluation.judge_model to another model",
            JudgeIsGeneratorWarning,
            stacklevel=2,
        )
    return settings.model_copy(update={"llm": judge_llm})


def load_questions(dataset_dir: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of the held-out `test.jsonl`, round-robin across disciplines so a small limit covers them all."""
    path = dataset_dir / "test.jsonl"
    if not path.exists():
        raise InputError(f"GLAN-Test needs the exported data set's test split: {path} not found")
    by_discipline: dict[str, list[dict[str, Any]]] = {}
    for row in iter_jsonl(path):
        by_discipline.setdefault(row["discipline"], []).append(row)
    rows = [row for row in chain.from_iterable(zip_longest(*by_discipline.values())) if row is not None]
    return rows[:limit]


Chat = list[dict[str, str]]


def _hf_answers(spec: ModelSpec, chats: list[Chat], max_tokens: int) -> list[str]:
    """Greedy chat answers from a local checkpoint (GGUF and LoRA adapter supported)."""
    model, tokenizer = load_hf_model(spec)
    answers = []
    for chat in chats:
        ids = tokenizer.apply_chat_template(
            chat,
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        output = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False)
        answers.append(tokenizer.decode(output[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))
    return answers


async def _endpoint_answers(spec: ModelSpec, chats: list[Chat], settings: Settings, max_tokens: int) -> list[str]:
    """Answers from an OpenAI-compatible endpoint, through the project's client (cache, retries, ledger)."""
    llm = settings.llm.model_copy(update={"base_url": spec.base_url, "base_urls": [], "model": spec.model})
    async with run_client(settings.model_copy(update={"llm": llm}), stage=f"glan_test_answers_{spec.name}") as client:
        results = await asyncio.gather(*(client.chat(chat, temperature=0.0, max_tokens=max_tokens) for chat in chats))
    return [result.text or "" for result in results]


async def judge(rows: list[dict[str, Any]], answers: list[str], settings: Settings) -> list[dict[str, Any]]:
    """Grade each answer against its reference with the judge prompt; one output row per question. Texts too long
    for the judge's context window are trimmed to fit, and the row's `trimmed` names them."""
    async with run_client(settings, stage="glan_test_judge") as client:
        fitted = [
            render_fitted(
                "judge",
                client.window(),
                VERDICT_TOKENS,
                {"question": row["question"], "reference": row["answer"], "answer": answer},
                discipline=row["discipline"],
                difficulty=row["difficulty"],
            )
            for row, answer in zip(rows, answers, strict=True)
        ]
        results = await asyncio.gather(
            *(client.chat(prompt=p, schema=JudgeVerdict, temperature=0.0) for p, _ in fitted)
        )
    graded = []
    for row, answer, result, (_, trimmed) in zip(rows, answers, results, fitted, strict=True):
        verdict = result.parsed if result.ok else None
        graded.append(
            {
                "id": row["id"],
                "discipline": row["discipline"],
                "difficulty": row["difficulty"],
                "answer": answer,
                "score": verdict.score if verdict else None,
                "correct": verdict.correct if verdict else None,
                "error": result.error,
                "trimmed": trimmed,
            }
        )
    return graded


async def answers_of(spec: ModelSpec, rows: list[dict[str, Any]], settings: Settings, max_tokens: int) -> list[str]:
    """One model's answers to the held-out items (greedy, at most `max_tokens` tokens each): the question, or for
    a follow-up item its conversation so far (`chat`)."""
    chats = [row.get("chat") or [{"role": "user", "content": row["question"]}] for row in rows]
    if spec.base_url:
        return await _endpoint_answers(spec, chats, settings, max_tokens)
    return await asyncio.to_thread(_hf_answers, spec, chats, max_tokens)


def followup_items(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """GLAN-Test's follow-up items: each held-out conversation's first follow-up, asked after the data set's own
    first answer, so every model continues the same conversation and the judge compares the second answers given
    the first (the judge reads the conversation as the item's question)."""
    items = []
    for row in rows:
        messages = row.get("messages") or []
        if len(messages) >= 4:
            question, answer, followup = (m["content"] for m in messages[:3])
            shown = f"{question}\n\n[The tutor's first answer]\n{answer}\n\n[The student's follow-up]\n{followup}"
            items.append(row | {"id": f"{row['id']}:followup", "chat": messages[:3], "question": shown})
    return items


async def run_glan_test(
    spec: ModelSpec, settings: Settings, dataset_dir: Path, limit: int | None, max_tokens: int
) -> pd.DataFrame:
    """Answer and grade (reference view) the held-out questions for one model; one row per question."""
    rows = load_questions(dataset_dir, limit)
    answers = await answers_of(spec, rows, settings, max_tokens)
    return pd.DataFrame(await judge(rows, answers, settings)).assign(model=spec.name)


async def judge_pairs(
    rows: list[dict[str, Any]], first: list[str], second: list[str], settings: Settings
) -> list[dict[str, Any]]:
    """The paper's pairwise judgement: each question judged twice, (first, second) and (second, first); a model's
    score is the mean over both orders, so a judge that favours a position moves both models alike."""

    def prompt(row: dict[str, Any], one: str, two: str, window: int | None) -> tuple[RenderedPrompt, list[str]]:
        return render_fitted(
            "judge_pairwise",
            window,
            VERDICT_TOKENS,
            {"question": row["question"], "answer_1": one, "answer_2": two},
            discipline=row["discipline"],
            difficulty=row["difficulty"],
        )

    async with run_client(settings, stage="glan_test_pairwise") as client:
        calls = [prompt(r, a, b, client.window()) for r, a, b in zip(rows, first, second, strict=True)]
        calls += [prompt(r, b, a, client.window()) for r, a, b in zip(rows, first, second, strict=True)]
        results = await asyncio.gather(*(client.chat(prompt=p, schema=PairVerdict, temperature=0.0) for p, _ in calls))
    forward, backward = results[: len(rows)], results[len(rows) :]
    judged = []
    for i, (row, ab, ba) in enumerate(zip(rows, forward, backward, strict=True)):
        ok = ab.ok and ba.ok
        first_score = (ab.parsed.score_1 + ba.parsed.score_2) / 2 if ok else None
        second_score = (ab.parsed.score_2 + ba.parsed.score_1) / 2 if ok else None
        judged.append(
            {
                "id": row["id"],
                "discipline": row["discipline"],
                "difficulty": row["difficulty"],
                "first_score": first_score,
                "second_score": second_score,
                "position_bias": (ab.parsed.score_1 - ab.parsed.score_2 + ba.parsed.score_1 - ba.parsed.score_2) / 2
                if ok
                else None,
                "error": None if ok else (ab.error or ba.error),
                "trimmed": sorted(set(calls[i][1]) | set(calls[len(rows) + i][1])),
            }
        )
    return judged


def grade_table(graded: pd.DataFrame, by: str) -> pd.DataFrame:
    """Mean judge score (1-10) and accuracy per model and `by` (discipline/difficulty); failures excluded."""
    scored = graded.dropna(subset=["score"]).astype({"correct": float})
    return (
        scored.groupby(["model", by])
        .agg(score=("score", "mean"), accuracy=("correct", "mean"), n=("score", "size"))
        .reset_index()
    )


def summarize_pairs(pairs: pd.DataFrame, by: str, resamples: int = 1000) -> pd.DataFrame:
    """Per `by` (discipline/difficulty/all): both models' mean scores, their difference (second − first) with a
    95% bootstrap interval, and wins/ties/losses; the difference is significant when the interval excludes 0."""
    rows = []
    for (pair, key), group in pairs.dropna(subset=["first_score"]).groupby(["pair", by]):
        diff = (group.second_score - group.first_score).to_numpy()
        low, high = bootstrap_interval([diff], np.mean, resamples)
        rows.append(
            {
                "pair": pair,
                by: key,
                "n": len(diff),
                "first": group.first_score.mean(),
                "second": group.second_score.mean(),
                "difference": diff.mean(),
                "ci_low": low,
                "ci_high": high,
                "significant": bool(low > 0 or high < 0),
                "wins": int((diff > 0).sum()),
                "ties": int((diff == 0).sum()),
                "losses": int((diff < 0).sum()),
            }
        )
    return pd.DataFrame(rows)


async def _glan_test(
    specs: list[ModelSpec], settings: Settings, rows: list[dict[str, Any]], mode: str
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(reference-graded rows, pairwise rows, pairwise follow-up rows) for all models: each answers once, both
    views reuse the answers; the follow-up items (conversations of the test split) are judged pairwise."""
    max_tokens = settings.evaluation.judge_max_tokens
    answers = {spec.name: await answers_of(spec, rows, settings, max_tokens) for spec in specs}
    judging = judge_settings(settings)
    graded = pd.DataFrame()
    if mode in ("reference", "both"):
        graded = pd.concat(
            [pd.DataFrame(await judge(rows, answers[s.name], judging)).assign(model=s.name) for s in specs]
        )
    pairs, followups = pd.DataFrame(), pd.DataFrame()
    if mode in ("pairwise", "both") and len(specs) > 1:
        pairs = await _pairwise(specs, rows, answers, judging)
        if items := followup_items(rows):
            seconds = {spec.name: await answers_of(spec, items, settings, max_tokens) for spec in specs}
            followups = await _pairwise(specs, items, seconds, judging)
    return graded, pairs, followups


async def _pairwise(
    specs: list[ModelSpec], rows: list[dict[str, Any]], answers: dict[str, list[str]], settings: Settings
) -> pd.DataFrame:
    """Every model after the first judged pairwise against the first on the same items."""
    first = specs[0].name
    return pd.concat(
        [
            pd.DataFrame(await judge_pairs(rows, answers[first], answers[s.name], settings)).assign(
                pair=f"{s.name} vs {first}", first=first, second=s.name
            )
            for s in specs[1:]
        ]
    )


def glan_test_report(
    specs: list[ModelSpec], settings: Settings, out_dir: Path, limit: int | None = None
) -> dict[str, pd.DataFrame] | None:
    """Score the models on the run's held-out split, in the views `evaluation.judge_mode` asks for, and save them.

    Returns summaries by name (`pairwise_by_discipline`, `pairwise_overall`, `followup_overall`,
    `followup_by_discipline` when the test split holds conversations, `reference_by_discipline`,
    `reference_by_difficulty`), or None when the run has no exported data set yet (notebook 05). `limit`
    overrides `evaluation.judge_limit`."""
    dataset_dir = settings.run_dir / DATASET
    if not (dataset_dir / "test.jsonl").exists():
        return None
    rows = load_questions(dataset_dir, limit or settings.evaluation.judge_limit)
    graded, pairs, followups = run(_glan_test(specs, settings, rows, settings.evaluation.judge_mode))
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries: dict[str, pd.DataFrame] = {}
    resamples = settings.evaluation.bootstrap
    for view, frame, file in (("pairwise", pairs, "pairwise"), ("followup", followups, "followups")):
        if len(frame):
            frame.to_json(out_dir / f"glan_test_{file}.jsonl", orient="records", lines=True)
            summaries[f"{view}_overall"] = summarize_pairs(frame.assign(all="all"), "all", resamples)
            summaries[f"{view}_by_discipline"] = summarize_pairs(frame, "discipline", resamples)
    if len(graded):
        graded.to_json(out_dir / "glan_test.jsonl", orient="records", lines=True)
        summaries["reference_by_discipline"] = grade_table(graded, "discipline")
        summaries["reference_by_difficulty"] = grade_table(graded, "difficulty")
    for name, frame in summaries.items():
        frame.to_json(out_dir / f"glan_test_{name}.json", orient="records", indent=1)
    return summaries
