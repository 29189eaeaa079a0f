"""Scale benchmark of the data set step: records/s and peak RSS of dedup, decontamination and export.

Synthesises N QAPair-shaped records (questions ~45 words, answers ~180 words, 2% exact and 2% near duplicates,
0.1% questions copied from GSM8K test) into a temporary run directory, then runs each step in a fresh
subprocess that reports its own `ru_maxrss`, so every figure is that step's peak alone. The decontamination
index is built (and cached) once before the runs; its build time is reported separately.

    .venv/bin/python benchmarks/bench_data.py --sizes 10000,100000,1000000 --out benchmarks/results/data.json

"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from glan_utils.core.records import Provenance, QAPair  # noqa: E402
from glan_utils.data.build import STEPS, DatasetSettings, run_step, write_report  # noqa: E402
from glan_utils.runs.store import RunStore  # noqa: E402

DISCIPLINES = [f"Discipline {i}" for i in range(126)]


def _template() -> dict[str, Any]:
    prov = Provenance(prompt="answer", prompt_hash="a1b2c3", model="bench-model", params={"temperature": 0.7})
    return QAPair(
        question_id="q",
        syllabus_id="s",
        subject_id="sub",
        discipline_id="d",
        field="F",
        subfield="SF",
        discipline="D",
        subject="S",
        level="undergraduate",
        difficulty="basic",
        session_indices=[1],
        concepts=["a", "b"],
        question="q",
        answer="a",
        provenance=prov,
        question_provenance=prov.model_copy(update={"prompt": "homework"}),
    ).model_dump(mode="json")


def synthesize(run_dir: Path, n: int, seed: int = 0) -> float:
    """Write n records to run_dir/answers.jsonl; returns the file size in MB."""
    from glan_utils.data.benchmarks import iter_items

    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(30_000)])
    cdf = np.cumsum(1.0 / np.arange(1, len(vocab) + 1))
    cdf /= cdf[-1]

    def phrase(k: int) -> str:
        return " ".join(vocab[np.searchsorted(cdf, rng.random(k))])

    gsm8k = [item.text for item in iter_items("gsm8k", limit=200)]
    base = _template()
    questions: list[str] = []
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "answers.jsonl").open("w", encoding="utf-8") as out:
        for i in range(n):
            roll = rng.random()
            if roll < 0.02 and questions:
                question = questions[rng.integers(len(questions))].upper() + " !"
            elif roll < 0.04 and questions:
                words = questions[rng.integers(len(questions))].split()
                words[rng.integers(len(words))] = "changed"
                question = " ".join(words)
            elif roll < 0.041:
                question = gsm8k[rng.integers(len(gsm8k))]
            else:
                question = phrase(int(rng.integers(30, 60)))
            if len(questions) < 50_000:
                questions.append(question)
            answer = phrase(int(rng.integers(120, 240)))
            disc = DISCIPLINES[i % len(DISCIPLINES)]
            row = base | {
                "id": f"r{i:08d}",
                "question_id": f"q{i}",
                "question": question,
                "answer": answer,
                "discipline": disc,
                "difficulty": "basic" if i % 2 else "challenging",
            }
            out.write(json.dumps(row) + "\n")
    return (run_dir / "answers.jsonl").stat().st_size / 1e6


class PeakMemory(threading.Thread):
    """Polls /proc/self/status: peak anonymous RSS (heap) apart from file-backed pages (mmap, page cache)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = {"RssAnon": 0, "RssFile": 0}

    def run(self) -> None:
        while True:
            for line in Path("/proc/self/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in self.peak:
                    self.peak[key] = max(self.peak[key], int(value.split()[0]) // 1024)
            time.sleep(0.05)


def child(run_dir: str, step: str) -> None:
    """Run one step in this (fresh) process and print its timing and peak RSS as JSON."""
    store, settings = RunStore(run_dir), DatasetSettings()
    memory = PeakMemory()
    memory.start()
    start = time.perf_counter()
    if step == "index":
        from glan_utils.data.decontaminate import load_index

        size = len(load_index(settings.decontamination))
        records = 0
    else:
        summary = run_step(store, settings, step)
        records = summary["records"]
        if step == "export":
            write_report(store, settings)
        size = None
    seconds = time.perf_counter() - start
    me, workers = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    print(
        json.dumps(
            {
                "step": step,
                "records": records,
                "seconds": seconds,
                "peak_rss_mb": me.ru_maxrss / 1024,
                "worker_peak_rss_mb": workers.ru_maxrss / 1024,
                "index_ngrams": size,
                "peak_anon_mb": memory.peak["RssAnon"],
                "peak_file_mb": memory.peak["RssFile"],
                "cpu_s": me.ru_utime + me.ru_stime + workers.ru_utime + workers.ru_stime,
            }
        )
    )


def _run_child(run_dir: Path, step: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", step, "--run-dir", str(run_dir)],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ | {"HF_DATASETS_DISABLE_PROGRESS_BARS": "1"},
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--out", default="benchmarks/results/data.json")
    parser.add_argument("--child", choices=[*STEPS, "index"], help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.run_dir, args.child)
        return
    base = Path(tempfile.mkdtemp(prefix="bench_data_"))
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_at_start": os.getloadavg(),
        },
        "index": _run_child(base, "index"),
        "runs": [],
    }
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            run_dir = base / f"n{n}"
            start = time.perf_counter()
            mb = synthesize(run_dir, n)
            run = {"records": n, "file_mb": mb, "synthesize_s": time.perf_counter() - start, "steps": {}}
            for step in STEPS:
                run["steps"][step] = _run_child(run_dir, step)
            report = json.loads((run_dir / "dataset" / "report.json").read_text())
            run["removed"] = {k: report[k] for k in ("exact_duplicates", "near_duplicates", "contaminated", "kept")}
            results["runs"].append(run)
            print(table(results), flush=True)
            shutil.rmtree(run_dir)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


def table(results: dict[str, Any]) -> str:
    """Markdown table: one row per (size, step)."""
    lines = [
        "| records | step | wall s | records/s | CPU s | RSS MB | heap / file-mapped MB | worker MB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in results["runs"]:
        for step, r in run["steps"].items():
            lines.append(
                f"| {run['records']:,} | {step} | {r['seconds']:.1f} | {r['records'] / r['seconds']:,.0f} "
                f"| {r['cpu_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['peak_anon_mb']} / {r['peak_file_mb']} "
                f"| {r['worker_peak_rss_mb']:.0f} |"
            )
    index = results["index"]
    lines.append(
        f"\nBenchmark index: {index['index_ngrams']:,} hashed 13-grams, loaded in {index['seconds']:.1f} s "
        f"(peak {index['peak_rss_mb']:.0f} MB; first build ~5 s, then cached)."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
