"""Throughput of the embedded llama.cpp server: one slot (`-np 1`) vs four slots (`-np 4`).

Each setting serves the same N requests of a fixed completion length (`ignore_eos`) at concurrency equal
to its slot count, via `openai.AsyncOpenAI` on the aiohttp transport. Prints a markdown table, writes JSON.
CPU-bound serving slows sharply when other work shares the cores; the JSON records the load average.

    .venv/bin/python benchmarks/bench_embedded.py [--requests 16] [--max-tokens 128] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path

import openai

from glan_utils.llm.embedded import EmbeddedServer

TOPICS = ["algebra", "chemistry", "history", "music", "biology", "economics", "poetry", "geology"]


async def _one_request(client: openai.AsyncOpenAI, model: str, topic: str, max_tokens: int) -> tuple[int, float]:
    """Send one chat request; return (completion tokens, latency in seconds)."""
    start = time.perf_counter()
    reply = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": f"Write a short lesson plan about {topic}."}],
        temperature=0.7,
        max_tokens=max_tokens,
        extra_body={"ignore_eos": True, "repeat_penalty": 1.1},
    )
    assert reply.usage is not None
    return reply.usage.completion_tokens, time.perf_counter() - start


async def _run_load(base_url: str, model: str, n_requests: int, concurrency: int, max_tokens: int) -> dict:
    """Fire `n_requests` with at most `concurrency` in flight; return throughput figures."""
    gate = asyncio.Semaphore(concurrency)
    async with openai.AsyncOpenAI(
        base_url=base_url, api_key="unused", max_retries=0, timeout=300,
        http_client=openai.DefaultAioHttpClient(),
    ) as client:  # fmt: skip

        async def gated(i: int) -> tuple[int, float]:
            async with gate:
                return await _one_request(client, model, TOPICS[i % len(TOPICS)], max_tokens)

        await _one_request(client, model, "warm-up", 8)
        start = time.perf_counter()
        results = await asyncio.gather(*(gated(i) for i in range(n_requests)))
        wall_s = time.perf_counter() - start
    tokens = sum(t for t, _ in results)
    return {
        "requests": n_requests,
        "concurrency": concurrency,
        "completion_tokens": tokens,
        "wall_s": round(wall_s, 2),
        "tokens_per_s": round(tokens / wall_s, 1),
        "requests_per_s": round(n_requests / wall_s, 3),
        "mean_latency_s": round(statistics.mean(lat for _, lat in results), 2),
    }


def bench(parallel: int, n_requests: int, max_tokens: int, threads: int | None) -> dict:
    """Start a server with `parallel` slots and load it at matching concurrency."""
    with EmbeddedServer(ctx=2048 * parallel, parallel=parallel, threads=threads) as server:
        row = asyncio.run(_run_load(server.base_url, server.model, n_requests, parallel, max_tokens))
        return {"parallel": parallel, "threads": server.threads, "model": server.model, **row}


def markdown(rows: list[dict]) -> str:
    """Rows as a markdown table."""
    cols = ["parallel", "concurrency", "requests", "completion_tokens", "wall_s", "tokens_per_s",
            "requests_per_s", "mean_latency_s"]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="llama-server -t (1 stays fast on a busy box)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/embedded.json"))
    args = parser.parse_args()
    load_before = os.getloadavg()[0]  # other work on the box skews CPU-bound serving a lot; record it
    rows = [bench(p, args.requests, args.max_tokens, args.threads) for p in (1, 4)]
    print(markdown(rows))
    machine = {
        "platform": platform.platform(),
        "cpus": len(os.sched_getaffinity(0)),
        "processor": platform.processor(),
        "load_avg_1m_before": round(load_before, 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
