"""Per-execution overhead of the code sandbox: bubblewrap vs the weak path vs a plain `python -I`.

HumanEval + MBPP is ~660 program executions per model evaluated, one sandbox start each, so the start-up cost is
what matters. Each mode runs a trivial program and a typical MBPP-style test program (a solution plus its asserts)
`--runs` times after two warm-up rounds, the modes interleaved; every run is a fresh process tree, timed from the
caller (wall clock, what the evaluation waits for).

- `bwrap`: `glan_utils.core.sandbox.run_python` as the evaluation calls it (isolation "bwrap").
- `weak`: the opt-in fallback (`unshare -n -p` + audit hook), called directly so bwrap need not be broken.
- `plain`: the base interpreter with `-I` on a program file, no sandbox at all: the floor.

    .venv/bin/python benchmarks/bench_sandbox.py [--runs 50]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common
from glan_utils.core import sandbox
from glan_utils.core.sandbox import SandboxLimits

COLUMNS = ["mode", "program", "runs", "mean_ms", "median_ms", "p95_ms", "x_plain", "s_per_660"]
EXECUTIONS_PER_MODEL = 660  # HumanEval (164) + MBPP (500)

PROGRAMS = {
    "trivial": "pass\n",
    "mbpp-style": """import math
import re


def is_not_prime(n):
    if n < 2:
        return True
    return any(n % i == 0 for i in range(2, int(math.sqrt(n)) + 1))


def remove_spaces(text):
    return re.sub(r"\\s+", "", text)


assert is_not_prime(2) == False
assert is_not_prime(10) == True
assert is_not_prime(35) == True
assert remove_spaces("a b  c") == "abc"
""",
}


def _plain(code: str, limits: SandboxLimits) -> bool:
    """No sandbox: the base interpreter on a temp file, the cost every mode pays at least."""
    exe, _ = sandbox._interpreter()
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as workdir:
        Path(workdir, "program.py").write_text(code)
        done = subprocess.run(
            [exe, "-I", "program.py"], cwd=workdir, capture_output=True, timeout=limits.timeout_s, check=False
        )
    return done.returncode == 0


MODES: dict[str, Callable[[str, SandboxLimits], bool]] = {
    "bwrap": lambda code, limits: sandbox.run_python(code, limits).passed,
    "weak": lambda code, limits: sandbox._run_weak(code, limits).passed,
    "plain": _plain,
}


def _measure(code: str, runs: int) -> dict[str, list[float]]:
    """Wall ms per run for every mode, interleaved (one run of each mode in turn), so load that changes while the
    benchmark runs hits all modes alike."""
    limits = SandboxLimits()
    walls: dict[str, list[float]] = {mode: [] for mode in MODES}
    for i in range(runs + 2):  # the first two rounds warm up
        for mode, execute in MODES.items():
            start = time.perf_counter()
            if not execute(code, limits):
                raise RuntimeError(f"the benchmark program failed under {mode}")
            if i >= 2:
                walls[mode].append((time.perf_counter() - start) * 1000)
    return walls


def _stats(walls: list[float]) -> dict[str, float]:
    ordered = sorted(walls)
    return {
        "mean_ms": statistics.fmean(ordered),
        "median_ms": statistics.median(ordered),
        "p95_ms": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
    }


def run(runs: int) -> dict[str, Any]:
    chosen = sandbox.isolation()
    if chosen.level != "bwrap":
        return {"rows": [], "markdown": f"### Sandbox overhead per execution\n\nskipped: {chosen.detail}\n"}
    rows: list[dict[str, Any]] = []
    for program, code in PROGRAMS.items():
        measured = {mode: _stats(walls) for mode, walls in _measure(code, runs).items()}
        floor = measured["plain"]["mean_ms"]
        for mode, stats in measured.items():
            rows.append(
                {
                    "mode": mode,
                    "program": program,
                    "runs": runs,
                    **{k: round(v, 1) for k, v in stats.items()},
                    "x_plain": round(stats["mean_ms"] / floor, 2),
                    "s_per_660": round(stats["mean_ms"] * EXECUTIONS_PER_MODEL / 1000, 1),
                }
            )
    bwrap_extra = [
        r["mean_ms"] - next(p["mean_ms"] for p in rows if p["mode"] == "plain" and p["program"] == r["program"])
        for r in rows
        if r["mode"] == "bwrap"
    ]
    notes = [
        f"Isolation: {chosen}.",
        f"bwrap adds {min(bwrap_extra):.0f}-{max(bwrap_extra):.0f} ms per execution over a plain `python -I`, "
        f"i.e. ~{max(bwrap_extra) * EXECUTIONS_PER_MODEL / 1000:.0f} s per model for HumanEval + MBPP "
        f"({EXECUTIONS_PER_MODEL} executions, run one after another).",
        "s_per_660: mean x 660, the sandbox's share of one model's code-benchmark scoring.",
        "bwrap's first call per process also probes bwrap once (one extra execution), not included.",
    ]
    table = common.write_results("sandbox", "Sandbox overhead per execution", rows, COLUMNS, notes=notes)
    return {"rows": rows, "markdown": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="timed runs per mode and program")
    args = parser.parse_args()
    print(run(args.runs)["markdown"])


if __name__ == "__main__":
    main()
