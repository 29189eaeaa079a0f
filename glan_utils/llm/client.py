"""The LLM client: any OpenAI-compatible endpoint, with cache, retries, rate limits, structured output and a ledger.

One `chat` call = cache lookup -> (rate limit, bounded concurrency, retried HTTP call) -> validation/repair -> cache
put. Transient errors (429, 5xx, timeouts, resets, garbled bodies) are retried with jittered exponential backoff that
honours `Retry-After`; errors a retry cannot fix (bad key, unknown model) stop the run with one clear line.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import openai
from aiolimiter import AsyncLimiter
from pydantic import BaseModel
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from glan_utils.core.errors import GlanError, SetupError
from glan_utils.core.ids import content_hash
from glan_utils.core.paths import ensure_writable_dir
from glan_utils.llm.cache import ResponseCache
from glan_utils.llm.endpoints import EndpointError, EndpointPool, EndpointStatusError, EndpointTimeout
from glan_utils.llm.ledger import Ledger
from glan_utils.llm.prompts import RenderedPrompt
from glan_utils.llm.structured import ParseError, parse, reask_messages, response_format
from glan_utils.settings import LLMSettings, Settings, api_key

FATAL_STATUS = {
    400: "bad request",
    401: "authentication failed (check the API key variable)",
    403: "permission denied",
    404: "not found (check the model name and base_url)",
}
# pydantic takes ~0.3 ms to build a schema's JSON schema, and every call (cache hits too) needs it for its key:
# build it once per schema class; the shared dict is only ever read (hashed, serialised, copied), never changed
_response_format = lru_cache(maxsize=256)(response_format)


class TransientError(Exception):
    """A reply that a retry may fix: garbled body, empty choices."""


@dataclass
class ChatResult:
    """Outcome of one logical call. `ok=False` carries the reason and any raw text; it is never cached."""

    ok: bool
    cache_key: str
    text: str | None = None
    parsed: BaseModel | None = None
    error: str | None = None
    cached: bool = False
    repaired: bool = False
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, EndpointStatusError):
        return exc.status == 429 or exc.status >= 500 or exc.status == 408
    return isinstance(exc, (EndpointError, TransientError, json.JSONDecodeError))


def _retry_after(exc: BaseException | None) -> float | None:
    return exc.retry_after if isinstance(exc, EndpointStatusError) else None


class _Wait:
    """Jittered exponential backoff, or exactly the server's Retry-After when it gives one (capped)."""

    def __init__(self, max_wait: float) -> None:
        self.max_wait = max_wait
        self.backoff = wait_random_exponential(multiplier=0.5, max=max_wait)

    def __call__(self, state: RetryCallState) -> float:
        hinted = _retry_after(state.outcome.exception() if state.outcome else None)
        return min(hinted, self.max_wait) if hinted is not None else self.backoff(state)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (openai.APIStatusError, EndpointStatusError)):
        return f"HTTP {getattr(exc, 'status', None) or getattr(exc, 'status_code', '?')}"
    if isinstance(exc, (openai.APITimeoutError, EndpointTimeout)):
        return "timeout"
    if isinstance(exc, (openai.APIConnectionError, EndpointError)):
        return "connection error"
    return f"{type(exc).__name__}: {exc}"[:200]


class LLMClient:
    """Async chat client for one model on one endpoint or a pool of replicas. Create it with `open_client`."""

    def __init__(
        self,
        settings: LLMSettings,
        *,
        base_url: str,
        model: str,
        cache: ResponseCache,
        ledger: Ledger,
        endpoint_id: str,
        key: str | None = None,
        extra_body: dict[str, Any] | None = None,
        stage: str = "",
        replicas: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.model = model
        self.base_url = base_url
        self.cache = cache
        self.ledger = ledger
        self.stage = stage
        self.endpoint_id = endpoint_id
        self.extra_body = {**(extra_body or {}), **settings.extra_body}
        self._sdk = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=key or "no-key",
            max_retries=0,
            timeout=settings.timeout_s,
            http_client=openai.DefaultAioHttpClient(),
        )
        self.endpoints = EndpointPool(
            replicas or [base_url], key=key, concurrency=settings.concurrency, timeout_s=settings.timeout_s
        )
        self._slots = asyncio.Semaphore(self.endpoints.capacity)
        self._rpm = AsyncLimiter(settings.requests_per_minute, 60) if settings.requests_per_minute else None
        self._tpm = AsyncLimiter(settings.tokens_per_minute, 60) if settings.tokens_per_minute else None

    async def check(self) -> None:
        """Fail fast, in one line, when the endpoint is down or does not serve the model."""
        try:
            listing = await self._sdk.models.list()
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise SetupError(f"endpoint {self.base_url}: {FATAL_STATUS[exc.status_code]}") from None
            return  # some endpoints (e.g. Azure deployments) do not list models; the first call will tell
        except openai.APIError as exc:
            raise SetupError(f"endpoint {self.base_url} is not reachable ({_describe(exc)})") from None
        served = [m.id for m in listing.data]
        if served and self.model not in served:
            raise SetupError(
                f"model '{self.model}' is not served by {self.base_url} (it serves: {', '.join(served[:5])})"
            )

    def request(
        self,
        messages: list[dict[str, str]],
        *,
        schema: type[BaseModel] | None = None,
        model: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        """The request body (without transport details); what the cache key is computed over."""
        body: dict[str, Any] = {"model": model or self.model, "messages": messages}
        for name, value in (("temperature", temperature), ("top_p", top_p), ("max_tokens", max_tokens)):
            if value is not None:
                body[name] = value
        if schema is not None:
            fmt = _response_format(schema, self.settings.structured_output)
            if fmt is not None:
                body["response_format"] = fmt
        return body

    def cache_key(self, body: dict[str, Any], prompt_hash: str, sample_index: int) -> str:
        return content_hash(self.endpoint_id, body, self.extra_body, prompt_hash, sample_index, length=32)

    async def chat(
        self,
        messages: list[dict[str, str]] | None = None,
        *,
        prompt: RenderedPrompt | None = None,
        schema: type[BaseModel] | None = None,
        model: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        sample_index: int = 0,
        length_retry_max_tokens: int | None = None,
    ) -> ChatResult:
        """One logical call: cached, rate-limited, retried, validated against `schema` when given.

        A reply cut at `max_tokens` is asked once more with twice the budget (at most `length_retry_max_tokens`)
        under the same cache key, so a long answer is kept instead of failing on every rerun.
        """
        messages = messages if messages is not None else prompt.messages if prompt else None
        if not messages:
            raise ValueError("chat() needs messages or a rendered prompt")
        body = self.request(
            messages, schema=schema, model=model, temperature=temperature, top_p=top_p, max_tokens=max_tokens
        )
        body["seed"] = sample_index  # repeated samples of one prompt differ, reproducibly, on every endpoint
        key = self.cache_key(body, prompt.hash if prompt else "", sample_index)
        params = {k: v for k, v in body.items() if k in ("model", "temperature", "top_p", "max_tokens", "seed")}
        hit = self.cache.get(key)
        if hit is not None:
            self.ledger.record(stage=self.stage, model=body["model"], cache_key=key, cached=True, ok=True)
            result = self._finish(key, hit, schema, params)
            result.cached = True
            return result
        result = await self._fetch(key, body, schema, params)
        if not result.ok and result.finish_reason == "length" and max_tokens and length_retry_max_tokens:
            budget = min(2 * max_tokens, length_retry_max_tokens)
            if budget > max_tokens:
                body, params = {**body, "max_tokens": budget}, {**params, "max_tokens": budget}
                result = await self._fetch(key, body, schema, params)
        if not result.ok and schema is not None and result.text is not None:
            retry_body = {**body, "messages": reask_messages(messages, result.text, result.error or "")}
            result = await self._fetch(key, retry_body, schema, params)
            result.repaired = result.repaired or result.ok
        if result.ok:
            self.cache.put(key, {"text": result.text, "finish_reason": result.finish_reason, "usage": result.usage})
        return result

    def _finish(
        self, key: str, reply: dict[str, Any], schema: type[BaseModel] | None, params: dict[str, Any]
    ) -> ChatResult:
        """Turn a raw reply into a result: truncation and schema violations are failures, with the text kept."""
        text, finish = reply.get("text") or "", reply.get("finish_reason")
        result = ChatResult(
            ok=True, cache_key=key, text=text, finish_reason=finish, usage=reply.get("usage") or {}, params=params
        )
        if schema is not None:
            try:
                result.parsed, result.repaired = parse(text, schema)
            except ParseError as exc:
                result.ok, result.error = False, str(exc)
                if finish == "length":
                    result.error = f"output cut at max_tokens; {exc}"
        elif finish == "length":
            result.ok, result.error = False, "output cut at max_tokens (finish_reason=length)"
        elif not text.strip():
            result.ok, result.error = False, "empty reply"
        return result

    async def _fetch(
        self, key: str, body: dict[str, Any], schema: type[BaseModel] | None, params: dict[str, Any]
    ) -> ChatResult:
        try:
            reply = await self._send(key, body)
        except GlanError:  # unknown model, bad key, full disk: no retry or re-ask can fix these
            raise
        except Exception as exc:  # retries exhausted: recorded as a failure, never cached
            return ChatResult(ok=False, cache_key=key, error=f"gave up after retries: {_describe(exc)}", params=params)
        return self._finish(key, reply, schema, params)

    async def _send(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.max_retries + 1),
            wait=_Wait(self.settings.retry_max_wait_s),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(key, body, attempt.retry_state.attempt_number)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, key: str, body: dict[str, Any], number: int) -> dict[str, Any]:
        if self._rpm:
            await self._rpm.acquire()
        if self._tpm:
            budget = body.get("max_tokens", 256) + sum(len(m["content"]) for m in body["messages"]) // 4
            await self._tpm.acquire(min(budget, self._tpm.max_rate))
        async with self._slots:
            start = time.perf_counter()
            try:
                completion = await self.endpoints.post("/chat/completions", {**body, **self.extra_body})
                if not isinstance(completion, dict) or not completion.get("choices"):
                    raise TransientError("reply has no choices")
            except Exception as exc:
                self.ledger.record(
                    stage=self.stage,
                    model=body["model"],
                    cache_key=key,
                    cached=False,
                    ok=False,
                    attempt=number,
                    latency_s=time.perf_counter() - start,
                    error=_describe(exc),
                )
                if isinstance(exc, EndpointStatusError) and exc.status in FATAL_STATUS:
                    raise SetupError(f"{self.base_url} model '{body['model']}': {FATAL_STATUS[exc.status]}") from None
                raise
        usage = completion.get("usage") or {}
        tokens = {
            "prompt_tokens": usage.get("prompt_tokens") or 0,
            "completion_tokens": usage.get("completion_tokens") or 0,
        }
        self.ledger.record(
            stage=self.stage,
            model=body["model"],
            cache_key=key,
            cached=False,
            ok=True,
            attempt=number,
            latency_s=time.perf_counter() - start,
            **tokens,
        )
        choice = completion["choices"][0]
        text = (choice.get("message") or {}).get("content") or ""
        return {"text": text, "finish_reason": choice.get("finish_reason"), "usage": tokens}

    async def aclose(self) -> None:
        await self._sdk.close()
        await self.endpoints.aclose()


@asynccontextmanager
async def open_client(settings: Settings, stage: str = "", check: bool = True) -> AsyncIterator[LLMClient]:
    """A ready client for the configured endpoint, or for the embedded llama.cpp server when none is set.

    The embedded server is started here and stopped on exit, so no process outlives the block.
    """
    async with AsyncExitStack() as stack:
        ensure_writable_dir(settings.run_dir)
        llm = settings.llm
        extra: dict[str, Any] = {}
        if llm.base_url is None and not llm.base_urls:
            from glan_utils.llm.embedded import EmbeddedServer  # imported lazily: remote runs need no llama.cpp

            emb = settings.embedded
            server = stack.enter_context(
                EmbeddedServer(
                    model=emb.model,
                    ctx=emb.ctx,
                    parallel=emb.parallel,
                    threads=emb.threads,
                    log_path=settings.run_dir / "llama-server.log",
                )
            )
            base_url, model, endpoint_id = server.base_url, server.model, f"embedded:{settings.embedded.model}"
            extra = dict(emb.extra_body)
        else:
            if not llm.model:
                raise SetupError("llm.model is not set: name the model served by llm.base_url")
            base_url = llm.base_url or llm.base_urls[0]
            # replicas of one model answer alike: a pool's cache key names the model, not the replica that served
            endpoint_id = f"pool:{llm.model}" if llm.base_urls else base_url.rstrip("/")
            model = llm.model
        cache = ResponseCache(settings.cache_file)
        stack.callback(cache.close)
        ledger = Ledger(settings.run_dir / "ledger.jsonl", llm.prices)
        stack.callback(ledger.close)
        client = LLMClient(
            llm,
            base_url=base_url,
            model=model,
            cache=cache,
            ledger=ledger,
            endpoint_id=endpoint_id,
            key=api_key(llm),
            extra_body=extra,
            stage=stage,
            replicas=llm.base_urls or None,
        )
        stack.push_async_callback(client.aclose)
        if check:
            await client.check()
        yield client
