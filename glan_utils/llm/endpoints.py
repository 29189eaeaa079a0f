"""Several OpenAI-compatible endpoints behind one call: least-in-flight balancing and failover on connection errors.

Scale-out to real engines means N replicas of one model (e.g. vLLM servers on N GPUs). Each call goes to the
replica with the fewest calls in flight (round-robin among ties), each replica holds at most `concurrency` calls,
and a replica that refuses or drops the connection is skipped for that call so the next one gets it. HTTP errors
(429, 5xx) are *not* failed over here: they go back to the client's retry policy, which honours Retry-After.

The transport is a plain aiohttp session posting JSON: the OpenAI SDK's request building costs ~5x more client
CPU per call, which caps one event loop well below a fast server (see benchmarks/README.md).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from glan_utils.core.errors import SetupError

Policy = Literal["least_in_flight", "round_robin"]


class EndpointError(Exception):
    """A call that no endpoint answered with a usable HTTP reply."""


class EndpointConnectionError(EndpointError):
    """Connection refused, reset or dropped on every endpoint tried."""


class EndpointTimeout(EndpointError):
    """No reply within the timeout."""


class EndpointStatusError(EndpointError):
    """An HTTP error reply (status >= 400), with the server's message, its error code and Retry-After hint.

    `code` is the error's string `code` (OpenAI, vLLM: `context_length_exceeded`, `content_filter`), else its
    `type` (llama.cpp: `exceed_context_size_error`), else "".
    """

    def __init__(self, status: int, message: str, retry_after: float | None = None, code: str = "") -> None:
        super().__init__(f"HTTP {status}{' ' + code if code else ''}: {message}")
        self.status, self.message, self.retry_after, self.code = status, message, retry_after, code


@dataclass(eq=False)
class Endpoint:
    """One replica and its live counters (shown in progress displays and benchmark tables)."""

    base_url: str
    concurrency: int
    in_flight: int = 0
    served: int = 0
    connection_failures: int = 0
    slots: asyncio.Semaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self.slots = asyncio.Semaphore(self.concurrency)


def _retry_after(headers: Any) -> float | None:
    try:
        return float(headers["retry-after"]) if "retry-after" in headers else None
    except ValueError:
        return None


def _error_message(raw: bytes) -> str:
    try:
        error = json.loads(raw).get("error") or {}
        return str(error.get("message") if isinstance(error, dict) else error)[:200]
    except (ValueError, AttributeError):
        return raw[:200].decode("utf-8", "replace")


def _error_code(raw: bytes) -> str:
    """The error's machine-readable kind: its string `code`, else its `type` (see EndpointStatusError)."""
    try:
        error = json.loads(raw).get("error")
    except (ValueError, AttributeError):
        return ""
    if not isinstance(error, dict):
        return ""
    code = error.get("code")
    kind = code if isinstance(code, str) and code and not code.isdigit() else error.get("type")
    return str(kind or "")[:60]


def status_error(status: int, raw: bytes, headers: Any) -> EndpointStatusError:
    """The error for an HTTP error reply, with the server's message, code and Retry-After."""
    return EndpointStatusError(status, _error_message(raw), _retry_after(headers), _error_code(raw))


def _connection_problem(exc: aiohttp.ClientConnectionError) -> str:
    """'connection refused' (nothing listens on the port) told apart from resets, DNS failures and the rest."""
    if isinstance(getattr(exc, "os_error", None), ConnectionRefusedError):
        return "connection refused (nothing listening there?)"
    return type(exc).__name__


async def list_models(base_url: str, *, key: str | None = None, timeout_s: float = 10.0) -> list[str]:
    """The model ids an endpoint serves (`GET /models`), for checks before a run spends anything.

    Raises EndpointConnectionError ('connection refused' when nothing listens), EndpointTimeout, or
    EndpointStatusError (e.g. 401); an endpoint that does not list models (404) gives an empty list.
    """
    headers = {"Authorization": f"Bearer {key or 'no-key'}"}
    url = base_url.rstrip("/") + "/models"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.get(url, headers=headers) as reply,
        ):
            raw = await reply.read()
    except TimeoutError:
        raise EndpointTimeout(f"{base_url}: no reply in {timeout_s:g} s") from None
    except aiohttp.ClientConnectionError as exc:
        raise EndpointConnectionError(f"{base_url}: {_connection_problem(exc)}") from None
    if reply.status == 404:
        return []
    if reply.status >= 400:
        raise status_error(reply.status, raw, reply.headers)
    try:
        return [str(m.get("id")) for m in json.loads(raw).get("data") or []]
    except (ValueError, AttributeError):
        return []


AUTH_PROBLEMS = {401: "authentication failed (check the API key)", 403: "permission denied"}


async def check_endpoint(base_url: str, models: Collection[str], *, key: str | None, timeout_s: float) -> None:
    """Fail fast, in one SetupError line, when an endpoint is down, refuses the key or serves none of `models`.

    The one model check (the client before its first call, `glan run` before any notebook), over the same HTTP
    stack as the calls. An endpoint that does not list models (e.g. Azure deployments) passes: the first call
    will tell.
    """
    try:
        served = await list_models(base_url, key=key, timeout_s=timeout_s)
    except EndpointConnectionError as exc:
        raise SetupError(f"endpoint not reachable: {exc}") from None
    except EndpointTimeout as exc:
        raise SetupError(f"endpoint timed out: {exc}") from None
    except EndpointStatusError as exc:
        if exc.status in AUTH_PROBLEMS:
            raise SetupError(f"endpoint {base_url}: {AUTH_PROBLEMS[exc.status]}") from None
        return
    missing = sorted(set(models) - set(served)) if served else []
    if missing:
        raise SetupError(f"model '{missing[0]}' is not served by {base_url} (it serves: {', '.join(served[:5])})")


class EndpointPool:
    """Posts JSON to the least busy of several endpoints; create inside a running event loop, `aclose` after."""

    def __init__(
        self,
        base_urls: list[str],
        *,
        key: str | None = None,
        concurrency: int = 16,
        timeout_s: float = 120.0,
        policy: Policy = "least_in_flight",
    ) -> None:
        if not base_urls:
            raise ValueError("EndpointPool needs at least one base URL")
        self.endpoints = [Endpoint(url, concurrency) for url in base_urls]
        self.policy = policy
        self._turn = itertools.count()
        # called with every reply's headers, so the client can honour x-ratelimit-remaining-* before a 429
        self.on_headers: Callable[[Mapping[str, str]], None] | None = None
        self._capacity = asyncio.Semaphore(self.capacity)  # pick only once a slot is free, so picks see real load
        self._headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key or 'no-key'}"}
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s), connector=aiohttp.TCPConnector(limit=0)
        )

    @property
    def capacity(self) -> int:
        """Calls the whole pool can hold in flight at once."""
        return sum(e.concurrency for e in self.endpoints)

    def pick(self, exclude: Collection[Endpoint] = ()) -> Endpoint:
        """The endpoint for the next call: fewest in flight (or next in turn), skipping `exclude`."""
        candidates = [e for e in self.endpoints if e not in exclude]
        start = next(self._turn) % len(candidates)
        rotated = candidates[start:] + candidates[:start]
        return rotated[0] if self.policy == "round_robin" else min(rotated, key=lambda e: e.in_flight)

    async def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST `payload` to `path` on one endpoint, failing over to the others on connection errors."""
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        tried: set[Endpoint] = set()
        async with self._capacity:
            while True:
                endpoint = self.pick(tried)
                try:
                    return await self._post_one(endpoint, path, data)
                except EndpointConnectionError:
                    endpoint.connection_failures += 1
                    tried.add(endpoint)
                    if len(tried) == len(self.endpoints):
                        raise

    async def _post_one(self, endpoint: Endpoint, path: str, data: bytes) -> dict[str, Any]:
        endpoint.in_flight += 1  # counted at once (no await since the pick), so the next pick sees it
        try:
            async with (
                endpoint.slots,
                self._session.post(endpoint.base_url + path, data=data, headers=self._headers) as reply,
            ):
                raw = await reply.read()
                if self.on_headers is not None:
                    self.on_headers(reply.headers)
                if reply.status >= 400:
                    raise status_error(reply.status, raw, reply.headers)
        except TimeoutError:  # first: aiohttp's timeouts are also connection errors
            raise EndpointTimeout(f"{endpoint.base_url}: no reply in time") from None
        except aiohttp.ClientConnectionError as exc:
            raise EndpointConnectionError(f"{endpoint.base_url}: {_connection_problem(exc)}") from None
        finally:
            endpoint.in_flight -= 1
        endpoint.served += 1
        return json.loads(raw)

    def stats(self) -> list[dict[str, Any]]:
        return [
            {
                "base_url": e.base_url,
                "served": e.served,
                "in_flight": e.in_flight,
                "connection_failures": e.connection_failures,
            }
            for e in self.endpoints
        ]

    async def aclose(self) -> None:
        await self._session.close()
