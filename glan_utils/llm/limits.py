"""How fast the client sends: even pacing for configured rate limits, AIMD concurrency when none is configured.

A token bucket (aiolimiter) lets a whole minute's allowance out at start-up, which is exactly the burst that makes
a provider answer 429; `Pacer` spaces calls evenly instead. With no limit configured the client does not know the
provider's, so `AdaptiveLimit` finds it: it halves the calls allowed in flight on a 429 (at most once per round
trip, as TCP does) and grows back by one per round trip of successes, so it settles just under what the server
takes. Server hints (`Retry-After`, `x-ratelimit-remaining-*` at 0) pause new sends until the stated reset.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Mapping

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """OpenAI's reset durations ('1s', '6m0s', '20ms', '0.5') in seconds; None if unreadable."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    return sum(float(n) * _UNIT_S[unit] for n, unit in parts) if parts else None


def pause_hint(headers: Mapping[str, str]) -> float | None:
    """Seconds to hold new sends when a reply says the requests or tokens left in the window are used up."""
    waits = []
    for kind in ("requests", "tokens"):
        remaining = headers.get(f"x-ratelimit-remaining-{kind}")
        if remaining is not None and remaining.strip() in ("0", "0.0"):
            reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}", "") or "")
            waits.append(reset if reset is not None else 1.0)
    return max(waits) if waits else None


class Pacer:
    """Admits `per_minute` units a minute, evenly spaced: no start-up burst, a big call delays the next ones."""

    def __init__(self, per_minute: float) -> None:
        self.interval = 60.0 / per_minute
        self._next = 0.0

    async def acquire(self, amount: float = 1.0) -> None:
        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + amount * self.interval
        if start > now:
            await asyncio.sleep(start - now)


class AdaptiveLimit:
    """Calls allowed in flight; fixed at `ceiling`, or AIMD between 1 and `ceiling` when `adaptive`."""

    def __init__(self, ceiling: int, *, adaptive: bool) -> None:
        self.ceiling, self.adaptive = ceiling, adaptive
        self.limit = float(ceiling)
        self.in_flight = 0
        self.cuts = 0
        self._last_cut = 0.0
        self._paused_until = 0.0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> float:
        """Wait for a slot (and any server-requested pause); returns the send time used to judge a later 429.

        A freed slot is handed to the oldest waiter directly (FIFO, O(1)), so thousands of waiting calls cost
        nothing while they wait.
        """
        await self._paused()
        if self.in_flight < self._cap() and not self._waiters:
            self.in_flight += 1
            return time.monotonic()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # the slot was handed over as we were cancelled
                self.in_flight -= 1
                self._wake()
            raise
        await self._paused()
        return time.monotonic()

    async def _paused(self) -> None:
        while (pause := self._paused_until - time.monotonic()) > 0:
            await asyncio.sleep(pause)

    def _cap(self) -> int:
        return max(1, int(self.limit))

    def release(self, sent_at: float, *, throttled: bool) -> None:
        """Free a slot: a 429 on a call sent after the last cut halves the limit; a success grows it by 1/limit."""
        self.in_flight -= 1
        if self.adaptive:
            if throttled and sent_at > self._last_cut:
                self.limit = max(1.0, self.limit / 2)
                self._last_cut = time.monotonic()
                self.cuts += 1
            elif not throttled:
                self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
        self._wake()

    def pause(self, seconds: float) -> None:
        """Hold every new send for `seconds` (Retry-After, or a window with nothing remaining)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self._cap():
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter gave up its place
                self.in_flight += 1
                waiter.set_result(None)
