"""Orchestration throughput: our LLMClient vs the ideal, peers and a naive loop; then the cached rerun.

The mock server (separate process) answers every chat call after a fixed latency, so with C calls in flight the
ideal is C / latency calls/s; anything below that is client overhead. Each row runs in a fresh child process and
reports wall time and its own CPU time; the server reports how many calls it received and its peak in-flight count.
Our client is fed as the pipeline feeds it: at most 2 x concurrency calls started and unfinished.

    .venv/bin/python benchmarks/bench_client.py [--calls 10000] [--concurrency 256] [--latency 0.2]
    .venv/bin/python benchmarks/bench_client.py ours --base-url URL --calls N --concurrency C --workdir DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common, peers

if TYPE_CHECKING:
    from glan_utils.llm.client import ChatResult

COLUMNS = [
    "client",
    "tier",
    "calls",
    "wall_s",
    "calls_per_s",
    "x_ideal",
    "cpu_ms_per_call",
    "server_calls",
    "server_peak_in_flight",
    "note",
]


def prompt(i: int) -> list[dict[str, str]]:
    """A distinct request per index, so the first run has no cache hits."""
    return [{"role": "user", "content": f"Write one homework question about concept number {i}."}]


async def _windowed(calls: int, window: int, call: Callable[[int], Awaitable[ChatResult]]) -> list[ChatResult]:
    """Run `call(i)` for every i with at most `window` calls started and unfinished, as `run_stage` feeds a stage.

    Gathering all calls at once instead makes every one build its request, hash its key and look it up before
    the event loop reads the first reply: a one-off stall of ~0.14 ms per call (1.4 s for 10k calls).
    """
    slots = asyncio.Semaphore(window)
    results: list[ChatResult] = []

    async def one(i: int) -> None:
        try:
            results.append(await call(i))
        finally:
            slots.release()

    tasks = []
    for i in range(calls):
        await slots.acquire()
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return results


async def _ours(base_url: str, calls: int, concurrency: int | None, workdir: Path) -> dict[str, Any]:
    from glan_utils.runs.client import run_client
    from glan_utils.settings import load_settings

    settings = load_settings(
        None,
        {
            "output_dir": str(workdir / "outputs"),
            "llm.base_url": base_url,
            "llm.model": "fake-model",
            "llm.cache_path": str(workdir / "cache.sqlite"),
            **({"llm.concurrency": concurrency} if concurrency else {}),  # none: the default, as a user gets it
        },
        environ={},
    )
    concurrency = settings.llm.concurrency
    cpu0, start = time.process_time(), time.perf_counter()
    async with run_client(settings, stage="bench") as client:
        results = await _windowed(calls, 2 * concurrency, lambda i: client.chat(prompt(i), max_tokens=64))
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "cpu_s": time.process_time() - cpu0,
        "ok": sum(r.ok for r in results),
        "cached": sum(r.cached for r in results),
    }


async def _floor(base_url: str, calls: int, concurrency: int) -> dict[str, Any]:
    """The floor: bare aiohttp posting the same JSON with the same window; no cache, ledger, retries or parsing."""
    import aiohttp

    cpu0, start = time.process_time(), time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def call(i: int) -> Any:
            body = {"model": "fake-model", "messages": prompt(i), "max_tokens": 64}
            async with session.post(f"{base_url}/chat/completions", json=body) as reply:
                return await reply.json()

        results = await _windowed(calls, 2 * concurrency, call)
    return {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu0, "ok": len(results), "cached": 0}


def _naive(base_url: str, calls: int) -> dict[str, Any]:
    """The loop most notebooks start with: the sync SDK, one call after another."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="no-key", max_retries=0)
    cpu0, start = time.process_time(), time.perf_counter()
    for i in range(calls):
        client.chat.completions.create(model="fake-model", messages=prompt(i), max_tokens=64)
    return {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu0, "ok": calls, "cached": 0}


def _row(
    client: str, tier: str, measured: dict[str, Any], server: dict[str, Any], ideal: float, note: str = ""
) -> dict[str, Any]:
    calls = measured["calls"]
    rate = calls / measured["wall_s"]
    return {
        "client": client,
        "tier": tier,
        "calls": calls,
        "wall_s": round(measured["wall_s"], 2),
        "calls_per_s": round(rate, 1),
        "x_ideal": round(rate / ideal, 3),
        "cpu_ms_per_call": round(1000 * measured["cpu_s"] / calls, 2),
        "server_calls": server["count"],
        "server_peak_in_flight": server["peak_in_flight"],
        "note": note,
        "ok": measured.get("ok"),
        "cached": measured.get("cached"),
    }


def _measure(srv: common.MockServer, cmd: list[str], env: dict[str, str] | None = None) -> tuple[dict, dict]:
    srv.reset()
    measured = common.run_json(cmd, env=env)
    return measured, srv.stats()


def run(calls: int, concurrency: int, latency: float, peer_calls: int, naive_calls: int) -> dict[str, Any]:
    """All rows of the throughput table plus the cached rerun; writes results and returns them."""
    ideal = concurrency / latency
    me = [common.PYTHON, str(Path(__file__).resolve())]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp, common.mock_server(latency) as srv:
        ours_cmd = [
            *me,
            "ours",
            "--base-url",
            srv.base_url,
            "--calls",
            str(calls),
            "--concurrency",
            str(concurrency),
            "--workdir",
            tmp,
        ]
        first, server = _measure(srv, ours_cmd)
        rows.append(_row("glan_utils LLMClient", "as used (cache+ledger on)", first, server, ideal))
        rerun, rerun_server = _measure(srv, ours_cmd)
        floor_cmd = [*me, "floor", "--base-url", srv.base_url, "--calls", str(calls), "--concurrency", str(concurrency)]
        floor, server = _measure(srv, floor_cmd)
        rows.append(_row("raw aiohttp floor", "same window, nothing else", floor, server, ideal))
        defaults_cmd = [*me, "ours", "--base-url", srv.base_url, "--calls", str(calls), "--concurrency", "0"]
        defaults, server = _measure(srv, [*defaults_cmd, "--workdir", f"{tmp}/defaults"])
        rows.append(_row("glan_utils LLMClient", "out of the box (no concurrency set)", defaults, server, ideal))
        for spec in peers.specs(srv.base_url, calls, peer_calls, concurrency):
            try:
                measured, server = _measure(srv, spec.cmd, spec.env)
            except (RuntimeError, OSError) as exc:
                rows.append({"client": spec.name, "tier": spec.tier, "note": f"skipped: {exc}"})
                continue
            rows.append(_row(spec.name, spec.tier, measured, server, ideal, spec.note))
        naive, server = _measure(srv, [*me, "naive", "--base-url", srv.base_url, "--calls", str(naive_calls)])
        projected = naive["wall_s"] * calls / naive_calls
        note = f"{naive_calls} calls measured; {calls:,} calls extrapolate to {projected:,.0f} s"
        rows.append(_row("naive sequential loop (sync SDK)", "as written", naive, server, ideal, note))
    rows.append(
        {
            "client": "ideal",
            "tier": f"{concurrency} in flight / {latency}s",
            "calls": calls,
            "wall_s": round(calls / ideal, 2),
            "calls_per_s": ideal,
            "x_ideal": 1.0,
        }
    )
    cached = {
        "calls": calls,
        "first_wall_s": round(first["wall_s"], 2),
        "rerun_wall_s": round(rerun["wall_s"], 3),
        "rerun_pct_of_first": round(100 * rerun["wall_s"] / first["wall_s"], 2),
        "rerun_cpu_s": round(rerun["cpu_s"], 3),
        "rerun_cache_hits": rerun["cached"],
        "calls_reaching_server": rerun_server["count"],
    }
    notes = [
        f"Mock server in a separate process, {latency * 1000:.0f} ms fixed latency; ideal = "
        f"{concurrency}/{latency} = {ideal:.0f} calls/s.",
        "cpu_ms_per_call = the client process's own CPU time / calls (server excluded).",
        f"Cached rerun of the same {calls:,} calls: {cached['rerun_wall_s']} s "
        f"({cached['rerun_pct_of_first']}% of the first run; {cached['rerun_cpu_s']} s of CPU), "
        f"{cached['calls_reaching_server']} calls reached the server.",
    ]
    table = common.write_results(
        "client", "Orchestration throughput (issue 9)", rows, COLUMNS, chart=("client", "calls_per_s"), notes=notes
    )
    (common.RESULTS / "client_cached_rerun.json").write_text(json.dumps(cached, indent=2))
    return {"rows": rows, "cached_rerun": cached, "markdown": table}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="all", choices=["all", "ours", "naive", "floor"])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--peer-calls", type=int, default=2_000, help="calls for slow peer tiers")
    parser.add_argument("--naive-calls", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=256, help="0 with `ours`: the default")
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--base-url")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    if args.mode == "ours":
        out = asyncio.run(_ours(args.base_url, args.calls, args.concurrency, args.workdir))
    elif args.mode == "naive":
        out = _naive(args.base_url, args.calls)
    elif args.mode == "floor":
        out = asyncio.run(_floor(args.base_url, args.calls, args.concurrency))
    else:
        print(run(args.calls, args.concurrency, args.latency, args.peer_calls, args.naive_calls)["markdown"])
        return
    print(json.dumps({**out, "calls": args.calls}))


if __name__ == "__main__":
    main()
