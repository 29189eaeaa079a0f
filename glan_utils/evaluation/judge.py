"""GLAN-Test: the evaluated model answers held-out generated questions and an LLM judge grades each answer.

The paper scores 6,300 held-out questions (50 per discipline) and reports per discipline. The questions come
from the exported data set's `test` split; answers come from the model under evaluation (a local checkpoint
through transformers, or an endpoint through the project's LLM client); the judge is the client's configured
model, asked for a pydantic verdict (1-10 score and correct/incorrect). A failed judge call keeps the row with
its error."""

from __future__ import annotations

import asyncio
from itertools import chain, zip_longest
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field

from glan_utils.core.aio import run
from glan_utils.core.errors import InputError
from glan_utils.core.jsonl import iter_jsonl
from glan_utils.evaluation.harness import ModelSpec
from glan_utils.llm.client import open_client
from glan_utils.llm.prompts import render
from glan_utils.settings import Settings


class JudgeVerdict(BaseModel):
    """The judge's grade for one answer."""

    score: int = Field(ge=1, le=10, description="1 = wrong or empty, 10 = as good as the reference.")
    correct: bool = Field(description="Whether the final answer agrees with the reference.")
    reason: str = Field(max_length=300, description="One sentence.")


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


def _hf_answers(spec: ModelSpec, questions: list[str], max_tokens: int) -> list[str]:
    """Greedy chat answers from a local checkpoint (GGUF and LoRA adapter supported)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": spec.gguf_file} if spec.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(spec.path, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(spec.path, **kwargs)
    if spec.peft:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, spec.peft)
    answers = []
    for question in questions:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        output = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False)
        answers.append(tokenizer.decode(output[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))
    return answers


async def _endpoint_answers(spec: ModelSpec, questions: list[str], settings: Settings, max_tokens: int) -> list[str]:
    """Answers from an OpenAI-compatible endpoint, through the project's client (cache, retries, ledger)."""
    llm = settings.llm.model_copy(update={"base_url": spec.base_url, "base_urls": [], "model": spec.model})
    async with open_client(settings.model_copy(update={"llm": llm}), stage=f"glan_test_answers_{spec.name}") as client:
        results = await asyncio.gather(
            *(client.chat([{"role": "user", "content": q}], temperature=0.0, max_tokens=max_tokens) for q in questions)
        )
    return [result.text or "" for result in results]


async def judge(rows: list[dict[str, Any]], answers: list[str], settings: Settings) -> list[dict[str, Any]]:
    """Grade each answer against its reference with the judge prompt; one output row per question."""
    async with open_client(settings, stage="glan_test_judge") as client:
        prompts = [
            render(
                "judge",
                discipline=row["discipline"],
                difficulty=row["difficulty"],
                question=row["question"],
                reference=row["answer"],
                answer=answer,
            )
            for row, answer in zip(rows, answers, strict=True)
        ]
        results = await asyncio.gather(*(client.chat(prompt=p, schema=JudgeVerdict, temperature=0.0) for p in prompts))
    graded = []
    for row, answer, result in zip(rows, answers, results, strict=True):
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
            }
        )
    return graded


async def run_glan_test(
    spec: ModelSpec, settings: Settings, dataset_dir: Path, limit: int | None, max_tokens: int
) -> pd.DataFrame:
    """Answer and judge the held-out questions for one model; returns one row per question."""
    rows = load_questions(dataset_dir, limit)
    questions = [row["question"] for row in rows]
    if spec.base_url:
        answers = await _endpoint_answers(spec, questions, settings, max_tokens)
    else:
        answers = await asyncio.to_thread(_hf_answers, spec, questions, max_tokens)
    frame = pd.DataFrame(await judge(rows, answers, settings))
    return frame.assign(model=spec.name)


def summarize(graded: pd.DataFrame, by: str) -> pd.DataFrame:
    """Mean judge score (1-10) and accuracy per model and `by` (discipline/difficulty); failures excluded."""
    scored = graded.dropna(subset=["score"]).astype({"correct": float})
    return (
        scored.groupby(["model", by])
        .agg(score=("score", "mean"), accuracy=("correct", "mean"), n=("score", "size"))
        .reset_index()
    )


def glan_test_report(
    specs: list[ModelSpec], settings: Settings, limit: int | None, max_tokens: int, out_dir: Path
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Score every model on the run's held-out split and save the graded rows and the per-discipline summary.

    Returns (by discipline, by difficulty), or None when the run has no exported data set yet (notebook 05).
    """
    dataset_dir = settings.run_dir / "dataset"
    if not (dataset_dir / "test.jsonl").exists():
        return None
    graded = pd.concat([run(run_glan_test(spec, settings, dataset_dir, limit, max_tokens)) for spec in specs])
    out_dir.mkdir(parents=True, exist_ok=True)
    graded.to_json(out_dir / "glan_test.jsonl", orient="records", lines=True)
    by_discipline, by_difficulty = summarize(graded, "discipline"), summarize(graded, "difficulty")
    by_discipline.to_json(out_dir / "glan_test_by_discipline.json", orient="records", indent=1)
    return by_discipline, by_difficulty
