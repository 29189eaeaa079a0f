"""The generation pipeline end to end on the mock server for 50 disciplines: time, CPU and memory per stage.

Taxonomy (a file: 5 fields x 2 sub-fields x 5 disciplines) -> subjects -> syllabi -> questions -> answers, every stage
through `glan_utils.stages.pipeline` exactly as the notebooks run it, against the mock server in a separate process.
Per stage: wall time, LLM calls, records written, client CPU ms per call; peak RSS of the whole run.

    .venv/bin/python benchmarks/bench_pipeline.py [--latency 0.2] [--concurrency 64] [--questions 5]
    .venv/bin/python benchmarks/bench_pipeline.py --scale [--full]   # memory/time at 10k and 100k (1M) tasks

`--scale` runs the chain with 50, 500 (and, with `--full`, 2,500) questions per syllabus on ~200 syllabi: ~10k /
~100k / ~500k question tasks plus as many answer tasks (~20k / ~200k / ~1M tasks), at 0 ms mock latency, and
reports the questions + answers stages' peak RSS and wall time, and the time of a rerun of the finished run
(every task skipped through the on-disk done-task index).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common

COLUMNS = ["stage", "wall_s", "llm_calls", "records", "failed", "calls_per_s", "cpu_ms_per_call"]


def _taxonomy_csv(path: Path) -> Path:
    """5 fields x 2 sub-fields x 5 disciplines: the mock server cannot be asked for exactly 50, a file can."""
    rows = [f"Field {f},Subfield {f}.{s},Discipline {f}.{s}.{d}" for f in range(5) for s in range(2) for d in range(5)]
    path.write_text("field,subfield,discipline\n" + "\n".join(rows) + "\n")
    return path


def _settings(base_url: str, workdir: Path, concurrency: int, questions: int, **more: Any) -> Any:
    from glan_utils.settings import load_settings

    return load_settings(
        None,
        {
            "output_dir": str(workdir),
            "run_name": "bench50",
            "llm.base_url": base_url,
            "llm.model": "fake-model",
            "llm.concurrency": concurrency,
            "llm.cache_path": str(workdir / "cache.sqlite"),
            "taxonomy.source": str(_taxonomy_csv(workdir / "taxonomy.csv")),
            "subjects.rounds": 2,
            "subjects.max_subjects": 4,
            "questions.questions_per_syllabus": questions,
            **more,
        },
        environ={},
    )


def child(base_url: str, concurrency: int, questions: int) -> dict[str, Any]:
    """Run every stage in this process; one row per stage plus the run's peak RSS."""
    from glan_utils.stages.pipeline import RUNNERS, STAGES

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        settings = _settings(base_url, Path(tmp), concurrency, questions)
        for stage in STAGES:
            cpu0, start = time.process_time(), time.perf_counter()
            report = asyncio.run(RUNNERS[stage](settings)).as_dict()
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
            calls = report["llm_calls"]
            rows.append(
                {
                    "stage": stage,
                    "wall_s": round(wall, 2),
                    "llm_calls": calls,
                    "records": report["records_written"],
                    "failed": report["failed"],
                    "calls_per_s": round(calls / wall, 1) if calls else None,
                    "cpu_ms_per_call": round(1000 * cpu / calls, 2) if calls else None,
                }
            )
    return {"rows": rows, "peak_rss_mb": round(common.usage()["peak_rss_mb"], 1)}


GENERATION = ("taxonomy", "subjects", "syllabi")  # the small stages before the task count explodes
BULK = ("questions", "answers")  # the stages whose tasks scale to millions


def child_scale(base_url: str, concurrency: int, questions: int, workdir: Path, stages: list[str]) -> dict[str, Any]:
    """Run `stages` over the run in `workdir` (resuming what is done) in this process: tasks, wall, peak RSS."""
    from glan_utils.stages.pipeline import RUNNERS

    # quality off, as in configs/paper.yaml (the paper has no judge)
    settings = _settings(base_url, workdir, concurrency, questions, **{"quality.enabled": False})
    start, planned = time.perf_counter(), {}
    for stage in stages:
        planned[stage] = asyncio.run(RUNNERS[stage](settings)).summary.planned
    return {
        "tasks": sum(planned.values()),
        "questions": planned.get("questions", 0),
        "wall_s": time.perf_counter() - start,
        "peak_rss_mb": common.usage()["peak_rss_mb"],
    }


SCALES = (50, 500)  # questions per syllabus on ~200 syllabi: ~10k and ~100k question tasks (+ as many answers)
FULL_SCALE = 2500  # ~500k questions + ~500k answers = ~1M tasks: `--full` only


def run_scale(concurrency: int, full: bool, scales: tuple[int, ...] = SCALES) -> dict[str, Any]:
    """Peak RSS and wall time of the questions + answers stages at ~20k / ~200k (/ ~1M) tasks, each in a fresh
    process after the small stages ran in another (so the first stages' MiniLM model is not in the figure), then
    a rerun of the whole chain over the finished run: memory must stay flat as tasks grow, a rerun cheap."""
    rows = []
    for questions in (*scales, *((FULL_SCALE,) if full else ())):
        with common.mock_server(0.0) as srv, tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            cmd = [common.PYTHON, str(Path(__file__).resolve()), "--child-scale", "--base-url", srv.base_url]
            cmd += ["--concurrency", str(concurrency), "--questions", str(questions), "--workdir", tmp]
            _, bulk, rerun = (
                common.run_json([*cmd, "--stages", ",".join(stages)], env={"TQDM_DISABLE": "1"}, timeout=86400)
                for stages in (GENERATION, BULK, GENERATION + BULK)
            )
        rows.append(
            {
                "question_tasks": bulk["questions"],
                "bulk_tasks": bulk["tasks"],
                "wall_s": round(bulk["wall_s"], 1),
                "tasks_per_s": round(bulk["tasks"] / bulk["wall_s"]),
                "peak_rss_mb": round(bulk["peak_rss_mb"], 1),
                "rerun_s": round(rerun["wall_s"], 1),
                "rerun_peak_rss_mb": round(rerun["peak_rss_mb"], 1),
            }
        )
    notes = [
        "~200 syllabi (50 disciplines x up to 4 subjects); bulk = the questions + answers stages, run in a fresh "
        f"process over the finished syllabi; mock latency 0, concurrency {concurrency}, quality stage off (as "
        "configs/paper.yaml); rerun = the whole chain again over the finished run (every task skipped through the "
        "on-disk done-task index), in another fresh process.",
        "Flat memory: peak RSS grows by far less than the task count (records stream, resume uses an on-disk "
        "index, not a set of every id).",
    ]
    columns = ["question_tasks", "bulk_tasks", "wall_s", "tasks_per_s", "peak_rss_mb", "rerun_s", "rerun_peak_rss_mb"]
    table = common.write_results("pipeline_scale", "Pipeline memory and time by task count", rows, columns, notes=notes)
    return {"rows": rows, "markdown": table}


def run(latency: float, concurrency: int, questions: int) -> dict[str, Any]:
    with common.mock_server(latency) as srv:
        cmd = [
            common.PYTHON,
            str(Path(__file__).resolve()),
            "--child",
            "--base-url",
            srv.base_url,
            "--concurrency",
            str(concurrency),
            "--questions",
            str(questions),
        ]
        out = common.run_json(cmd, env={"TQDM_DISABLE": "1"})
        server = srv.stats()
    rows = out["rows"]
    total_wall = sum(r["wall_s"] for r in rows)
    total_calls = sum(r["llm_calls"] for r in rows)
    rows.append(
        {
            "stage": "total",
            "wall_s": round(total_wall, 2),
            "llm_calls": total_calls,
            "records": sum(r["records"] for r in rows),
            "failed": sum(r["failed"] for r in rows),
            "calls_per_s": round(total_calls / total_wall, 1),
        }
    )
    notes = [
        "50 disciplines (taxonomy from a file, so 0 taxonomy calls); subjects 2 rounds x 5, capped at 4 per "
        f"discipline; {questions} questions per syllabus; mock latency {latency * 1000:.0f} ms, "
        f"concurrency {concurrency}.",
        f"Peak RSS of the pipeline process: {out['peak_rss_mb']} MB; server received {server['count']} calls "
        f"(peak {server['peak_in_flight']} in flight).",
        "Stages run one after another (each needs the previous one's records); a stage with fewer tasks "
        "than slots (subjects: 100 calls) cannot reach the 64-in-flight ideal.",
    ]
    table = common.write_results(
        "pipeline",
        "Pipeline end to end, 50 disciplines, mock server",
        rows,
        COLUMNS,
        chart=("stage", "wall_s"),
        notes=notes,
    )
    return {"rows": rows, "peak_rss_mb": out["peak_rss_mb"], "server": server, "markdown": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--questions", type=int, default=5, help="questions per syllabus")
    parser.add_argument("--scale", action="store_true", help="memory/time at 10k and 100k tasks")
    parser.add_argument("--full", action="store_true", help="with --scale: add the 1M-task row")
    parser.add_argument(
        "--per-syllabus", default=",".join(map(str, SCALES)), help="with --scale: questions per syllabus"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-scale", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stages", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.base_url, args.concurrency, args.questions)))
    elif args.child_scale:
        stages = args.stages.split(",")
        print(json.dumps(child_scale(args.base_url, args.concurrency, args.questions, args.workdir, stages)))
    elif args.scale:
        scales = tuple(int(n) for n in args.per_syllabus.split(",") if n)
        print(run_scale(args.concurrency, args.full, scales)["markdown"])
    else:
        print(run(args.latency, args.concurrency, args.questions)["markdown"])


if __name__ == "__main__":
    main()
