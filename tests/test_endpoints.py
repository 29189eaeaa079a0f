"""Several endpoints behind one client: balancing, per-endpoint bounds, failover, and endpoint-free cache keys."""

from __future__ import annotations

import asyncio
import socket

import pytest

from glan_utils.llm.endpoints import EndpointConnectionError, EndpointPool, EndpointStatusError
from glan_utils.runs.client import run_client
from glan_utils.testing import OpenAIServer

BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


def _dead_url() -> str:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


async def _post_many(pool: EndpointPool, n: int) -> None:
    try:
        await asyncio.gather(*(pool.post("/chat/completions", BODY) for _ in range(n)))
    finally:
        await pool.aclose()


@pytest.mark.parametrize("policy", ["least_in_flight", "round_robin"])
async def test_calls_spread_over_endpoints_within_their_bounds(policy):
    with OpenAIServer(latency_s=0.05) as a, OpenAIServer(latency_s=0.05) as b:
        pool = EndpointPool([a.base_url, b.base_url], concurrency=3, policy=policy)
        await _post_many(pool, 24)
        assert a.count + b.count == 24 and a.count >= 8 and b.count >= 8
        assert a.peak_in_flight <= 3 and b.peak_in_flight <= 3


async def test_least_in_flight_favours_the_faster_endpoint():
    with OpenAIServer(latency_s=0.01) as fast, OpenAIServer(latency_s=0.3) as slow:
        pool = EndpointPool([fast.base_url, slow.base_url], concurrency=4)
        await _post_many(pool, 40)
        assert fast.count > 3 * slow.count


async def test_connection_errors_fail_over_to_a_live_endpoint():
    with OpenAIServer() as live:
        dead = _dead_url()
        pool = EndpointPool([dead, live.base_url], concurrency=2, policy="round_robin")
        await _post_many(pool, 10)
        assert live.count == 10
        assert pool.endpoints[0].connection_failures >= 1 and pool.endpoints[0].served == 0


async def test_all_endpoints_down_is_a_connection_error():
    pool = EndpointPool([_dead_url(), _dead_url()])
    with pytest.raises(EndpointConnectionError):
        await _post_many(pool, 1)


async def test_http_errors_are_not_failed_over_but_returned_with_retry_after():
    with OpenAIServer() as a:
        a.script("429")
        pool = EndpointPool([a.base_url])
        with pytest.raises(EndpointStatusError) as caught:
            await _post_many(pool, 1)
        assert caught.value.status == 429 and caught.value.retry_after == 1.0


async def test_client_pool_balances_and_cache_key_ignores_the_serving_replica(make_settings):
    with OpenAIServer(latency_s=0.02) as a, OpenAIServer(latency_s=0.02) as b:
        settings = make_settings(
            a.base_url, {"llm.base_url": None, "llm.base_urls": [a.base_url, b.base_url], "llm.concurrency": 2}
        )
        prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(20)]
        async with run_client(settings, stage="t") as client:
            first = await asyncio.gather(*(client.chat(m) for m in prompts))
        assert all(r.ok for r in first) and a.count >= 5 and b.count >= 5
        served = a.count + b.count
        reordered = make_settings(b.base_url, {"llm.base_url": None, "llm.base_urls": [b.base_url, a.base_url]})
        async with run_client(reordered, stage="t") as client:
            again = await asyncio.gather(*(client.chat(m) for m in prompts))
        assert all(r.cached for r in again) and a.count + b.count == served
        assert [r.cache_key for r in again] == [r.cache_key for r in first]
