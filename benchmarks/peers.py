"""Peer clients on the same workload, each in its own venv so their pins never touch the project's.

`specs()` lists the rows the throughput table runs; this file is also the child script that each peer venv runs
(`python benchmarks/peers.py curator --base-url URL --calls N --concurrency C`), printing one JSON line. Peers
stay offline (GLAN_FACTS.md, "Client throughput facts"); "equalised" sets concurrency, retries 0 and caches off
like our row, "as shipped" keeps each tool's defaults except what it needs to reach a local endpoint at all.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENVS = {"curator": HERE / ".peers-venv", "distilabel": HERE / ".peers-venv-distilabel"}
PACKAGES = {"curator": ["bespokelabs-curator==0.1.31"], "distilabel": ["distilabel==1.5.3", "openai", "requests"]}


@dataclass
class PeerSpec:
    """One row: which peer, which tier, and the child command that measures it."""

    name: str
    tier: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""


def ensure_venv(peer: str) -> Path | None:
    """The peer's venv python, creating the venv on first use; None (row skipped) when it cannot be built."""
    venv = VENVS[peer]
    python = venv / "bin" / "python"
    if not python.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES[peer]], check=True, timeout=900)
        except (subprocess.SubprocessError, OSError):
            return None
    return python


def _curator_env(python: Path) -> dict[str, str]:
    site = glob.glob(str(python.parent.parent / "lib" / "python3*" / "site-packages" / "litellm"))
    tokenizers = Path(site[0]) / "litellm_core_utils" / "tokenizers" if site else Path()
    return {
        "TELEMETRY_ENABLED": "false",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "CURATOR_DISABLE_CACHE": "true",
        "TIKTOKEN_CACHE_DIR": str(tokenizers),
        "OPENAI_API_KEY": "no-key",
        "HF_HUB_OFFLINE": "1",
    }


def specs(base_url: str, calls: int, slow_calls: int, concurrency: int) -> list[PeerSpec]:
    """Rows for every peer whose venv exists or can be built."""
    out: list[PeerSpec] = []
    common = ["--base-url", base_url, "--concurrency", str(concurrency)]
    if python := ensure_venv("curator"):
        env = _curator_env(python)
        cmd = [str(python), __file__, "curator", *common]
        out.append(PeerSpec("bespokelabs-curator 0.1.31", "equalised", [*cmd, "--calls", str(calls)], env))
        out.append(
            PeerSpec(
                "bespokelabs-curator 0.1.31",
                "as shipped",
                [*cmd, "--calls", str(slow_calls), "--as-shipped"],
                env,
                "default concurrency/retries; rate limits raised (else 200 RPM fallback)",
            )
        )
    if python := ensure_venv("distilabel"):
        out.append(
            PeerSpec(
                "distilabel 1.5.3",
                "equalised",
                [str(python), __file__, "distilabel", *common, "--calls", str(slow_calls)],
                {"OPENAI_API_KEY": "no-key"},
                "Pipeline + TextGeneration, batch = concurrency",
            )
        )
    return out


def run_curator(base_url: str, calls: int, concurrency: int, as_shipped: bool) -> dict[str, Any]:
    from bespokelabs import curator

    params: dict[str, Any] = {
        "base_url": base_url,
        "api_key": "no-key",
        "max_requests_per_minute": 10_000_000,
        "max_tokens_per_minute": 10_000_000_000,
        "require_all_responses": False,
    }
    if not as_shipped:
        params |= {"max_retries": 0, "max_concurrent_requests": concurrency}
    llm = curator.LLM(
        model_name="fake-model", backend="openai", backend_params=params, generation_params={"max_tokens": 64}
    )
    prompts = [f"Write one homework question about concept number {i}." for i in range(calls)]
    cpu0, start = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        result = llm(prompts, working_dir=work)
    rows = len(result.dataset) if hasattr(result, "dataset") else len(result)
    return {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu0, "ok": rows}


def run_distilabel(base_url: str, calls: int, concurrency: int) -> dict[str, Any]:
    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration

    data = [{"instruction": f"Write one homework question about concept number {i}."} for i in range(calls)]
    with tempfile.TemporaryDirectory() as work:
        os.environ["DISTILABEL_CACHE_DIR"] = work
        with Pipeline(name="bench", cache_dir=work) as pipeline:
            load = LoadDataFromDicts(data=data, batch_size=concurrency)
            llm = OpenAILLM(
                model="fake-model",
                base_url=base_url,
                api_key="no-key",
                max_retries=0,
                generation_kwargs={"max_new_tokens": 64},
            )
            load >> TextGeneration(llm=llm, input_batch_size=concurrency)
        cpu0, start = _cpu_with_children(), time.perf_counter()
        distiset = pipeline.run(use_cache=False)
        wall = time.perf_counter() - start
    rows = sum(len(split) for config in distiset.values() for split in config.values())
    return {"wall_s": wall, "cpu_s": _cpu_with_children() - cpu0, "ok": rows}


def _cpu_with_children() -> float:
    """CPU seconds of this process and its finished children (distilabel runs its steps in subprocesses)."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description="Run one peer client on the benchmark workload.")
    parser.add_argument("peer", choices=sorted(VENVS))
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--as-shipped", action="store_true")
    args = parser.parse_args()
    if args.peer == "curator":
        out = run_curator(args.base_url, args.calls, args.concurrency, args.as_shipped)
    else:
        out = run_distilabel(args.base_url, args.calls, args.concurrency)
    sys.stdout.flush()
    print(json.dumps({**out, "calls": args.calls}))


if __name__ == "__main__":
    main()
