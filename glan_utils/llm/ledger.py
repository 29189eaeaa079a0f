"""The cost ledger: one JSON line per call attempt (tokens, latency, cache hit, cost), and estimates before spending.

Every HTTP attempt, retries included, is a line with `cached: false`, written at once so the ledger's count equals
what the server received even after a kill; cache hits are lines with `cached: true` and zero cost, written in
batches (a kill may lose the last few, never a paid line) because a cached rerun makes one per call.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from glan_utils.core.jsonl import JsonlWriter, iter_jsonl
from glan_utils.settings import Price


def call_cost(model: str, prompt_tokens: int, completion_tokens: int, prices: Mapping[str, Price]) -> float:
    """Dollars for one call from the price table; unknown models (e.g. local ones) cost 0."""
    price = prices.get(model)
    if price is None:
        return 0.0
    return (prompt_tokens * price.input_per_1m + completion_tokens * price.output_per_1m) / 1e6


@dataclass
class Totals:
    """Aggregate of ledger lines."""

    calls: int = 0
    cached: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0

    def add(self, line: Mapping[str, Any]) -> None:
        if line.get("cached"):
            self.cached += 1
            return
        self.calls += 1
        self.failed += 0 if line.get("ok") else 1
        self.prompt_tokens += int(line.get("prompt_tokens") or 0)
        self.completion_tokens += int(line.get("completion_tokens") or 0)
        self.cost_usd += float(line.get("cost_usd") or 0.0)
        self.latency_s += float(line.get("latency_s") or 0.0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(lines: Iterable[Mapping[str, Any]], by: str | None = "stage") -> dict[str, Totals]:
    """Totals overall (key 'all') and per value of `by` (e.g. per stage), streaming."""
    out: dict[str, Totals] = {"all": Totals()}
    for line in lines:
        out["all"].add(line)
        if by:
            out.setdefault(str(line.get(by) or "-"), Totals()).add(line)
    return out


def read_ledger(path: str | Path) -> dict[str, Totals]:
    return summarize(iter_jsonl(Path(path)))


@dataclass
class Ledger:
    """Appends call lines to `path` (when given) and keeps running totals for progress displays.

    Cache-hit lines are held back and written in batches (on the next paid line, every few hundred hits, and on
    `close`); paid lines are written immediately.
    """

    path: Path | None
    prices: Mapping[str, Price] = field(default_factory=dict)
    totals: Totals = field(default_factory=Totals)

    def __post_init__(self) -> None:
        self._writer = JsonlWriter(self.path) if self.path else None

    def record(
        self,
        *,
        stage: str,
        model: str,
        cache_key: str,
        cached: bool,
        ok: bool,
        attempt: int = 0,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        latency_s: float = 0.0,
        error: str | None = None,
    ) -> None:
        line = {
            "ts": time.time(),
            "stage": stage,
            "model": model,
            "cache_key": cache_key,
            "cached": cached,
            "ok": ok,
            "attempt": attempt,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "latency_s": round(latency_s, 4),
            "error": error,
            "cost_usd": 0.0 if cached else call_cost(model, prompt_tokens, completion_tokens, self.prices),
        }
        self.totals.add(line)
        if self._writer:
            self._writer.write(line, defer=cached)

    def close(self) -> None:
        if self._writer:
            self._writer.close()


@dataclass(frozen=True)
class Estimate:
    """What a planned batch of calls will cost, shown before any spending."""

    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    model: str

    def __str__(self) -> str:
        return (
            f"{self.calls:,} calls to {self.model}: ~{self.prompt_tokens:,} prompt + "
            f"~{self.completion_tokens:,} completion tokens, ~${self.cost_usd:,.2f}"
        )


def estimate(
    calls: int, prompt_tokens_per_call: int, completion_tokens_per_call: int, model: str, prices: Mapping[str, Price]
) -> Estimate:
    """Upper-bound style estimate: calls x expected tokens x price (cache hits would make it cheaper)."""
    prompt, completion = calls * prompt_tokens_per_call, calls * completion_tokens_per_call
    return Estimate(calls, prompt, completion, call_cost(model, prompt, completion, prices), model)
