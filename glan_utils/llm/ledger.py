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

from glan_utils.core.errors import GlanError
from glan_utils.core.jsonl import JsonlWriter, iter_jsonl
from glan_utils.settings import Price


def price_of(model: str, prices: Mapping[str, Price]) -> Price | None:
    """The model's price: its own entry, else the longest entry it extends with a dash.

    Served replies name a dated snapshot (`gpt-4o-mini-2024-07-18` for `gpt-4o-mini`), so an exact lookup alone
    would price real calls at $0.
    """
    price = prices.get(model)
    if price is not None:
        return price
    stems = [name for name in prices if model.startswith(f"{name}-")]
    return prices[max(stems, key=len)] if stems else None


def call_cost(model: str, prompt_tokens: int, completion_tokens: int, prices: Mapping[str, Price]) -> float:
    """Dollars for one call from the price table; unknown models (e.g. local ones) cost 0."""
    price = price_of(model, prices)
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
        price_factor: float = 1.0,
    ) -> None:
        """One line; `price_factor` scales the table price (0.5 for Batch API lines)."""
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
            "cost_usd": 0.0
            if cached
            else price_factor * call_cost(model, prompt_tokens, completion_tokens, self.prices),
        }
        self.emit(line)

    def emit(self, line: dict[str, Any]) -> None:
        """Count a finished line and write it (a subclass may send it elsewhere, e.g. to a Ray driver)."""
        self.totals.add(line)
        if self._writer:
            self._writer.write(line, defer=bool(line.get("cached")))

    def close(self) -> None:
        if self._writer:
            self._writer.close()


class BudgetExceeded(GlanError):
    """The next call could take the run past `llm.max_cost_usd` or `llm.max_tokens_total`."""

    manifest_status = "stopped: budget"


@dataclass
class Budget:
    """Spend so far plus the worst case of every call in flight, against the run's caps.

    A call is admitted only if its worst case (prompt estimate + max_tokens, at its price) fits beside what was
    spent and what is in flight, so concurrency can never overshoot the cap; a finished call settles at its
    real usage. A resume passes what the run's ledger already holds as `spent_*`.
    """

    max_cost_usd: float | None = None
    max_tokens: int | None = None
    spent_usd: float = 0.0
    spent_tokens: int = 0
    held_usd: float = 0.0
    held_tokens: int = 0

    @property
    def active(self) -> bool:
        return self.max_cost_usd is not None or self.max_tokens is not None

    def reserve(self, tokens: int, usd: float) -> None:
        """Hold a call's worst case, or raise BudgetExceeded if it does not fit."""
        if self.max_tokens is not None and self.spent_tokens + self.held_tokens + tokens > self.max_tokens:
            raise BudgetExceeded(
                f"token cap reached: {self.spent_tokens:,} spent + {self.held_tokens:,} in flight + {tokens:,} "
                f"for the next call > llm.max_tokens_total {self.max_tokens:,} (raise it and rerun to continue)"
            )
        if self.max_cost_usd is not None and self.spent_usd + self.held_usd + usd > self.max_cost_usd:
            raise BudgetExceeded(
                f"budget reached: ${self.spent_usd:,.4f} spent + ${self.held_usd:,.4f} in flight + ${usd:,.4f} "
                f"for the next call > llm.max_cost_usd ${self.max_cost_usd:,.2f} (raise it and rerun to continue)"
            )
        self.held_tokens += tokens
        self.held_usd += usd

    def settle(self, held_tokens: int, held_usd: float, tokens: int, usd: float) -> None:
        """Replace a call's worst case by what it really used (0 for a failed attempt)."""
        self.held_tokens -= held_tokens
        self.held_usd -= held_usd
        self.spent_tokens += tokens
        self.spent_usd += usd


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
