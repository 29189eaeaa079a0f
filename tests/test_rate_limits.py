"""How fast the client sends: AIMD concurrency against a server that throttles, and even pacing of rpm limits."""

from __future__ import annotations

import asyncio
import time

from glan_utils.llm.ledger import read_ledger
from glan_utils.llm.limits import parse_duration, pause_hint
from glan_utils.runs.client import run_client
from glan_utils.testing import OpenAIServer


def _prompts(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"q{i}"}] for i in range(n)]


async def _throttled_run(make_settings, adaptive: bool, n: int = 400):
    """n calls from a client allowed 64 in flight to a provider that takes 8 at once and answers 429 to the rest."""
    with OpenAIServer(latency_s=0.05, throttle_above=8, retry_after=0.02) as server:
        overrides = {"llm.concurrency": 64, "llm.max_retries": 30, "llm.adaptive_concurrency": adaptive}
        settings = make_settings(server.base_url, overrides)
        async with run_client(settings, stage="t") as client:
            results = await asyncio.gather(*(client.chat(m) for m in _prompts(n)))
            settled = client.limit.limit
        return results, settled, server.counts_by_kind["throttled"], settings


async def test_with_no_limit_configured_the_client_settles_near_what_the_server_takes(make_settings):
    results, settled, throttled, settings = await _throttled_run(make_settings, adaptive=True)
    assert all(r.ok for r in results)  # no failed call: every 429 was retried
    assert 3 <= settled <= 16, settled  # near 8, from a start at 64
    totals = read_ledger(settings.run_dir / "ledger.jsonl")["all"]
    assert totals.calls - totals.failed == 400
    _, fixed_limit, fixed_throttled, _ = await _throttled_run(make_settings, adaptive=False)
    assert fixed_limit == 64 and throttled * 4 < fixed_throttled, (throttled, fixed_throttled)  # it backed off


async def test_a_fixed_limit_is_used_as_is_when_adaptation_is_off(make_settings):
    with OpenAIServer(latency_s=0.02) as server:
        settings = make_settings(server.base_url, {"llm.concurrency": 6, "llm.adaptive_concurrency": False})
        async with run_client(settings, stage="t") as client:
            await asyncio.gather(*(client.chat(m) for m in _prompts(60)))
        assert server.peak_in_flight == 6 and client.limit.limit == 6


async def test_requests_per_minute_are_paced_evenly_with_no_start_up_burst(make_settings):
    with OpenAIServer() as server:
        settings = make_settings(server.base_url, {"llm.requests_per_minute": 1200})  # one call every 50 ms
        async with run_client(settings, stage="t") as client:
            start = time.monotonic()
            done: list[float] = []

            async def one(messages):
                await client.chat(messages)
                done.append(time.monotonic() - start)

            await asyncio.gather(*(one(m) for m in _prompts(20)))
    assert sum(t < 0.25 for t in done) <= 6  # a token bucket would have let all 20 out at once
    assert max(done) >= 0.9


async def test_tokens_per_minute_are_paced_by_the_calls_size(make_settings):
    with OpenAIServer() as server:
        # each call is ~3 prompt tokens + 100 max_tokens: 6,000 tokens a minute is one call a second
        settings = make_settings(server.base_url, {"llm.tokens_per_minute": 6000})
        async with run_client(settings, stage="t") as client:
            start = time.monotonic()
            await asyncio.gather(*(client.chat(m, max_tokens=100) for m in _prompts(3)))
    assert time.monotonic() - start >= 1.9


def test_rate_limit_headers_pause_new_sends_until_the_reset():
    assert parse_duration("6m0s") == 360 and parse_duration("20ms") == 0.02 and parse_duration("1.5") == 1.5
    assert pause_hint({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"}) == 2
    assert pause_hint({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "250ms"}) == 0.25
    assert pause_hint({"x-ratelimit-remaining-requests": "12", "x-ratelimit-reset-requests": "2s"}) is None
