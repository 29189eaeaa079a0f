"""Benchmark of the quality tooling: rule checks and diversity metrics at 10k and 100k pairs, embedding
throughput, and the judge stage's client CPU per call.

Each workload runs in a fresh child process that reports its own wall time, CPU time and peak RSS (`ru_maxrss`),
so every figure is that workload's alone. Pairs are synthesised (questions ~40 words, answers ~120 words, 100
disciplines, 5% planted rule failures). The diversity row times the per-discipline metrics (semantic
near-duplicates, mean cosine distance, lexical near-duplicates, concept coverage, difficulty mix) on random unit
vectors standing in for embeddings, so it measures the metrics, not the model; the embedding row measures
all-MiniLM-L6-v2 itself (cold cache, then cached). The judge row runs the quality stage against the mock server
in its own process (no latency), so its CPU per call is the client's: prompt rendering, cache, ledger,
validation, rule flags and the closed-answer check.

    .venv/bin/python benchmarks/bench_quality.py                 # 10k + 100k pairs, 1000 embeddings, 2000 judge pairs
    .venv/bin/python benchmarks/bench_quality.py --quick         # 2k pairs, 300 embeddings, 300 judge pairs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import PYTHON, markdown_table, mock_server, run_json, usage, write_results  # noqa: E402

WORDS = [
    f"{w}{k}" for w in ("energy", "cell", "market", "proof", "vector", "enzyme", "the", "of", "and") for k in range(30)
]
STOP = ["the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "on", "be", "by", "this"]
BAD = (
    "Sure! Here is the answer. ",
    "Subject: Homework 2\n",
    "I'm sorry, but I can't help with that. ",
    "That\\u0027s ",
)


def synth_pairs(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """n pair dicts shaped like `answers.jsonl` rows, 100 disciplines, 5% with a planted rule failure."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        words = [rng.choice(WORDS) if k % 3 else rng.choice(STOP) for k in range(120)]
        answer = " ".join(words) + (f". Final answer: {i % 97}." if i % 2 else ".")
        if i % 20 == 0:
            answer = BAD[(i // 20) % len(BAD)] + answer
        discipline = f"Discipline {i % 100}"
        pairs.append(
            {
                "id": f"p{i}",
                "question_id": f"q{i}",
                "syllabus_id": f"syl{i % 400}",
                "discipline_id": discipline,
                "subject_id": f"sub{i % 400}",
                "discipline": discipline,
                "subject": f"Subject {i % 400}",
                "level": "undergraduate",
                "difficulty": "challenging" if i % 2 else "basic",
                "session_indices": [1, 2] if i % 2 else [1],
                "concepts": [f"c{i % 7}", f"c{(i + 3) % 7}"],
                "language": "English",
                "question": f"Question {i}: " + " ".join(rng.choice(WORDS) for _ in range(40)) + "?",
                "answer": answer,
            }
        )
    return pairs


def child_rules(n: int) -> dict[str, Any]:
    from glan_utils.stages.rules import count_flags

    pairs = synth_pairs(n)
    before, start = usage(), time.perf_counter()
    counts = count_flags(pairs)
    seconds = time.perf_counter() - start
    return {
        "workload": "rule checks",
        "pairs": n,
        "seconds": seconds,
        "pairs_per_s": n / seconds,
        "flagged": sum(counts.values()),
        "cpu_s": usage()["cpu_s"] - before["cpu_s"],
        "peak_rss_mb": usage()["peak_rss_mb"],
    }


def child_diversity(n: int) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    from glan_utils.settings import load_settings
    from glan_utils.views.diversity import node_table

    pairs = synth_pairs(n)
    frame = pd.DataFrame(pairs).assign(
        flags=[[] for _ in pairs], score=4.0, difficulty_fit=4.0, verified=False, agreed=None, question_type=None
    )
    sessions = [{"key_concepts": [f"c{k}" for k in range(j, j + 5)]} for j in range(0, 10, 5)]
    syllabi = pd.DataFrame({"id": [f"syl{k}" for k in range(400)], "sessions": [sessions] * 400})
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    settings = load_settings(None, {}, environ={})
    before, start = usage(), time.perf_counter()
    table = node_table(frame, syllabi, settings, embedder=lambda texts: vectors[: len(texts)])
    seconds = time.perf_counter() - start
    return {
        "workload": "diversity metrics (100 disciplines)",
        "pairs": n,
        "seconds": seconds,
        "pairs_per_s": n / seconds,
        "nodes": len(table),
        "cpu_s": usage()["cpu_s"] - before["cpu_s"],
        "peak_rss_mb": usage()["peak_rss_mb"],
    }


def child_embed(n: int) -> dict[str, Any]:
    from glan_utils.llm.embeddings import embed

    texts = [pair["question"] for pair in synth_pairs(n, seed=1)]
    embed(["warm up the model"], cache_path=Path(tempfile.mkdtemp()) / "warm.sqlite")
    cache = Path(tempfile.mkdtemp()) / "embeddings.sqlite"
    start = time.perf_counter()
    embed(texts, cache_path=cache)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    embed(texts, cache_path=cache)
    cached = time.perf_counter() - start
    return {
        "workload": "embeddings all-MiniLM-L6-v2 (batch 64)",
        "pairs": n,
        "seconds": cold,
        "pairs_per_s": n / cold,
        "cached_per_s": n / cached,
        "peak_rss_mb": usage()["peak_rss_mb"],
    }


def child_judge(n: int, base_url: str) -> dict[str, Any]:
    from glan_utils.core.records import QAPair, TaxonomyNode
    from glan_utils.runs.store import RunStore
    from glan_utils.settings import load_settings
    from glan_utils.stages import pipeline

    out = Path(tempfile.mkdtemp())
    settings = load_settings(
        None,
        {"output_dir": str(out), "llm.base_url": base_url, "llm.model": "fake-model", "llm.concurrency": 64},
        environ={},
    )
    field = TaxonomyNode(name="F", level="field", path=["F"])
    sub = TaxonomyNode(name="S", level="subfield", parent_id=field.id, path=["F", "S"])
    leaf = TaxonomyNode(name="D", level="discipline", parent_id=sub.id, path=["F", "S", "D"])
    store = RunStore(settings.run_dir)
    store.append("taxonomy", [field, sub, leaf])
    store.append("answers", [QAPair(**(p | {"discipline_id": leaf.id, "discipline": "D"})) for p in synth_pairs(n)])
    before, start = usage(), time.perf_counter()
    report = asyncio.run(pipeline.run(settings, "quality"))
    seconds, cpu = time.perf_counter() - start, usage()["cpu_s"] - before["cpu_s"]
    calls = report.llm.calls
    return {
        "workload": "judge stage (mock server, no latency)",
        "pairs": n,
        "seconds": seconds,
        "pairs_per_s": n / seconds,
        "calls": calls,
        "cpu_ms_per_call": 1000 * cpu / calls,
        "peak_rss_mb": usage()["peak_rss_mb"],
    }


def _child(args: argparse.Namespace) -> None:
    runs = {"rules": child_rules, "diversity": child_diversity, "embed": child_embed}
    row = child_judge(args.n, args.base_url) if args.child == "judge" else runs[args.child](args.n)
    print(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", choices=["rules", "diversity", "embed", "judge"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    sizes, embeds, judged = ([2000], 300, 300) if args.quick else ([10_000, 100_000], 1000, 2000)
    me = [PYTHON, str(Path(__file__).resolve())]
    rows = [run_json([*me, "--child", kind, "--n", str(n)]) for kind in ("rules", "diversity") for n in sizes]
    rows.append(run_json([*me, "--child", "embed", "--n", str(embeds)]))
    with mock_server(0.0) as server:
        rows.append(run_json([*me, "--child", "judge", "--n", str(judged), "--base-url", server.base_url]))
    columns = ["workload", "pairs", "seconds", "pairs_per_s", "cached_per_s", "cpu_ms_per_call", "peak_rss_mb"]
    print(
        write_results("quality", "Quality tooling: rule checks, diversity, embeddings, judge client CPU", rows, columns)
    )
    print(markdown_table(rows, columns))


if __name__ == "__main__":
    main()
