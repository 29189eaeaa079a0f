"""The LLM client: any OpenAI-compatible endpoint, with cache, retries, rate limits, structured output and a ledger.

One `chat` call = cache lookup -> transport (by default: budget check, pacing, adaptive concurrency, retried HTTP
call) -> validation/repair -> cache put. Transient errors (429, 5xx, timeouts, resets, garbled bodies) are retried
with jittered exponential backoff that honours `Retry-After`; a request the endpoint refuses (a 4xx about that request:
context length, content filter) is a failure of that item, and refusals that show a setup error (a bad key, or the
first calls of a stage all refused alike: unknown model, a rejected parameter) stop the stage with one clear line
(`llm/refusals.py`). `LLMClient.transport` is the seam other ways of sending plug into (the Batch API
records calls into files and answers them from the downloaded output) without touching the cache and validation.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import openai
from pydantic import BaseModel
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from glan_utils.core.errors import GlanError, SetupError
from glan_utils.core.ids import content_hash
from glan_utils.llm.cache import ResponseCache
from glan_utils.llm.context import context_window, prompt_tokens
from glan_utils.llm.endpoints import (
    EndpointError,
    EndpointPool,
    EndpointStatusError,
    EndpointTimeout,
    check_endpoint,
)
from glan_utils.llm.ledger import Budget, Ledger, call_cost, price_of, read_ledger
from glan_utils.llm.limits import AdaptiveLimit, Pacer, pause_hint
from glan_utils.llm.prompts import RenderedPrompt
from glan_utils.llm.refusals import ALWAYS_FATAL, REFUSED, RETRYABLE_STATUS, RefusalGuard, Refused, is_refusal
from glan_utils.llm.structured import ParseError, parse, reask_messages, response_format
from glan_utils.settings import EmbeddedSettings, LLMSettings, api_key
from glan_utils.settings.llm import endpoint_kind

# pydantic takes ~0.3 ms to build a schema's JSON schema, and every call (cache hits too) needs it for its key:
# build it once per schema class; the shared dict is only ever read (hashed, serialised, copied), never changed
_response_format = lru_cache(maxsize=256)(response_format)
# Request seeds below 2**31 suit every engine (llama.cpp takes a uint32); seed 0 keeps seed = sample index.
_SEED_STRIDE = 1_000_003
_SEED_RANGE = 2**31


def request_seed(run_seed: int, sample_index: int) -> int:
    """The seed sent with one sample: the run seed picks which draw of the data set, the index which sample of
    a prompt, so `seed: 11` and `seed: 41` are independent samples and each is reproducible and cached."""
    return (run_seed * _SEED_STRIDE + sample_index) % _SEED_RANGE


WORST_COMPLETION_TOKENS = 4096  # what a call without max_tokens is assumed to cost at most, for the budget


class TransientError(Exception):
    """A reply that a retry may fix: garbled body, empty choices."""


class Deferred(Exception):
    """Raised by a transport that keeps the call for later (a Batch API file): no reply now, nothing cached."""


# (cache key, request body without extra_body) -> {"text", "finish_reason", "usage"}; raises Deferred or errors
Transport = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


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
    refused: bool = False


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, EndpointStatusError):
        return exc.status in RETRYABLE_STATUS or exc.status >= 500
    return isinstance(exc, (EndpointError, TransientError, json.JSONDecodeError))


def _retry_after(exc: BaseException | None) -> float | None:
    return exc.retry_after if isinstance(exc, EndpointStatusError) else None


class _Wait:
    """Full-jitter exponential backoff (0.5 s window, doubling), or exactly the server's Retry-After (capped).

    `failed_before` counts the attempts made before tenacity's loop began (the client's bare first attempt).
    """

    def __init__(self, max_wait: float, failed_before: int = 0) -> None:
        self.max_wait, self.failed_before = max_wait, failed_before

    def __call__(self, state: RetryCallState) -> float:
        return self.after(
            state.outcome.exception() if state.outcome else None, state.attempt_number + self.failed_before
        )

    def after(self, exc: BaseException | None, failed: int) -> float:
        """Seconds to wait after the `failed`-th failed attempt."""
        hinted = _retry_after(exc)
        return min(hinted, self.max_wait) if hinted is not None else random.uniform(0, self._window(failed))

    def _window(self, failed: int) -> float:
        return min(self.max_wait, 0.5 * 2.0 ** min(failed - 1, 60))


def _usage(completion: dict[str, Any]) -> dict[str, int]:
    usage = completion.get("usage") or {}
    return {"prompt_tokens": usage.get("prompt_tokens") or 0, "completion_tokens": usage.get("completion_tokens") or 0}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, EndpointStatusError):
        return f"HTTP {exc.status}{' ' + exc.code if exc.code else ''}"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}"
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
        run_seed: int = 0,
        slot_window: int | None = None,
    ) -> None:
        self.settings = settings
        self.run_seed = run_seed
        # the embedded server's tokens per slot; other endpoints' windows are looked up per model (`window`)
        self.slot_window = slot_window
        self._windows: dict[str, int | None] = {}
        # requests refused on earlier runs (by request and window), and this stage's refusals kept until the
        # refusal check has decided they are about their items, not the setup
        refusals_of = getattr(cache, "refusals", None)
        self._refused_before: dict[str, str] = refusals_of() if refusals_of and not settings.resend_refused else {}
        self._unkept: list[tuple[str, str]] = []
        self.model = model
        self.base_url = base_url
        self.cache = cache
        self.ledger = ledger
        self.stage = stage
        self.endpoint_id = endpoint_id
        self.extra_body = {**(extra_body or {}), **settings.extra_body}
        self.key = key
        self.endpoints = EndpointPool(
            replicas or [base_url], key=key, concurrency=settings.concurrency, timeout_s=settings.timeout_s
        )
        self.endpoints.on_headers = self._hints
        paced = bool(settings.requests_per_minute or settings.tokens_per_minute)
        self.limit = AdaptiveLimit(self.endpoints.capacity, adaptive=settings.adaptive_concurrency and not paced)
        self._rpm = Pacer(settings.requests_per_minute) if settings.requests_per_minute else None
        self._tpm = Pacer(settings.tokens_per_minute) if settings.tokens_per_minute else None
        self.budget = Budget(settings.max_cost_usd, settings.max_tokens_total)
        self.refusals = RefusalGuard(
            settings.refusal_check_calls, settings.refusal_check_share, f"{base_url} model '{model}'"
        )
        self._key = key
        self.transport: Transport = self.send

    def _hints(self, headers: Mapping[str, str]) -> None:
        wait = pause_hint(headers)
        if wait is not None:
            self.limit.pause(min(wait, self.settings.retry_max_wait_s))

    async def check(self) -> None:
        """Fail fast, in one line, when the endpoint is down or does not serve the model."""
        await check_endpoint(self.base_url, [self.model], key=self.key, timeout_s=self.settings.timeout_s)

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
        # repeated samples of one prompt differ, reproducibly, on every endpoint; the seed is in the cache key
        body["seed"] = request_seed(self.run_seed, sample_index)
        key = self.cache_key(body, prompt.hash if prompt else "", sample_index)
        params = {k: v for k, v in body.items() if k in ("model", "temperature", "top_p", "max_tokens", "seed")}
        params.update(run_seed=self.run_seed, sample_index=sample_index)
        hit = await self._cache_get(key)
        if hit is not None:
            self.ledger.record(stage=self.stage, model=body["model"], cache_key=key, cached=True, ok=True)
            result = self._finish(key, hit, schema, params)
            result.cached = True
            return result
        if (too_long := self._too_long(body)) is not None:  # known before sending: no call, nothing cached
            return ChatResult(ok=False, cache_key=key, error=too_long, params=params)
        if self._refused_before and (before := self._refused_before.get(self._refusal_key(key, body))):
            error = f"{before} [refused on an earlier run, not sent again: llm.resend_refused]"
            return ChatResult(ok=False, cache_key=key, error=error, params=params, refused=True)
        result = await self._fetch(key, body, schema, params)
        if result.refused:
            self._keep_refusal(self._refusal_key(key, body), result.error or "")
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
            await self._cache_put(
                key, {"text": result.text, "finish_reason": result.finish_reason, "usage": result.usage}
            )
        return result

    def window(self, model: str | None = None) -> int | None:
        """Tokens one request to `model` may hold (None: unknown, so unchecked): the embedded server's slot, else
        `llm.context_windows` or the known defaults."""
        if self.slot_window is not None:
            return self.slot_window
        model = model or self.model
        if model not in self._windows:
            self._windows[model] = context_window(model, self.settings.context_windows)
        return self._windows[model]

    def _too_long(self, body: dict[str, Any]) -> str | None:
        """Why the request cannot fit the model's context window (prompt + max_tokens, as OpenAI-style endpoints
        count), or None when it can or the window is unknown. The embedded server is not pre-checked: the estimate
        over-counts, and llama.cpp refuses a prompt longer than its slot at no cost (the item's failure)."""
        window = None if self.slot_window is not None else self.window(body["model"])
        if window is None:
            return None
        prompt, reply = prompt_tokens(body["messages"]), int(body.get("max_tokens") or 0)
        if prompt + reply <= window:
            return None
        asked = f"prompt ~{prompt:,} tokens" + (f" + max_tokens {reply:,}" if reply else "")
        return (
            f"{REFUSED}context window): {asked} > {window:,}, the window of '{body['model']}' "
            "(llm.context_windows; prompt tokens over-counted at 3 bytes a token); not sent"
        )

    def _refusal_key(self, key: str, body: dict[str, Any]) -> str:
        """A refusal is kept by request and context window: a larger window is a reason to send it again."""
        return content_hash(key, self.window(body["model"]), length=32)

    def _keep_refusal(self, key: str, reason: str) -> None:
        self._unkept.append((key, reason))
        self._flush_refusals()

    def _flush_refusals(self) -> None:
        """Remember refusals for later runs once the refusal check has found the stage's setup sound."""
        put = getattr(self.cache, "put_refusal", None)
        if put is None or not self.refusals.decided or self.refusals.tripped is not None:
            return
        for unkept in self._unkept:
            put(*unkept)
        self._unkept.clear()

    async def _cache_get(self, key: str) -> dict[str, Any] | None:
        aget = getattr(self.cache, "aget", None)  # a cache on another machine (Ray driver) answers asynchronously
        return await aget(key) if aget else self.cache.get(key)

    async def _cache_put(self, key: str, value: dict[str, Any]) -> None:
        aput = getattr(self.cache, "aput", None)
        if aput:
            await aput(key, value)
        else:
            self.cache.put(key, value)

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
            reply = await self.transport(key, body)
        except Deferred as exc:  # kept for a batch: a failure of this run, retried (or answered) by the next
            return ChatResult(ok=False, cache_key=key, error=f"deferred: {exc}", params=params)
        except Refused as exc:  # the endpoint refused this one request: a failure of the item, never cached
            return ChatResult(ok=False, cache_key=key, error=str(exc), params=params, refused=True)
        except GlanError:  # unknown model, bad key, full disk: no retry or re-ask can fix these
            raise
        except Exception as exc:  # retries exhausted: recorded as a failure, never cached
            return ChatResult(ok=False, cache_key=key, error=f"gave up after retries: {_describe(exc)}", params=params)
        return self._finish(key, reply, schema, params)

    async def send(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        """The default transport: the call over HTTP, retried; each attempt is a ledger line.

        The first attempt runs bare and tenacity's loop is built only after it fails: building it costs about
        0.1 ms, a quarter of a call's client CPU, and nearly every call succeeds at once.
        """
        retries = self.settings.max_retries
        try:
            return await self._attempt(key, body, 1)
        except Exception as exc:
            if retries == 0 or not _retryable(exc):
                raise
            wait = _Wait(self.settings.retry_max_wait_s, failed_before=1)
            await asyncio.sleep(wait.after(exc, 1))
        retrying = AsyncRetrying(
            stop=stop_after_attempt(retries), wait=wait, retry=retry_if_exception(_retryable), reraise=True
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(key, body, attempt.retry_state.attempt_number + 1)
        raise AssertionError("unreachable")  # pragma: no cover

    def worst_case(self, body: dict[str, Any]) -> tuple[int, float]:
        """(tokens, dollars) a call can cost at most: prompt at ~3 characters a token, plus all of max_tokens."""
        prompt = sum(len(str(m.get("content") or "")) for m in body["messages"]) // 3 + 8
        completion = int(body.get("max_tokens") or WORST_COMPLETION_TOKENS)
        price = price_of(body["model"], self.settings.prices)
        usd = (prompt * price.input_per_1m + completion * price.output_per_1m) / 1e6 if price else 0.0
        return prompt + completion, usd

    async def _attempt(self, key: str, body: dict[str, Any], number: int) -> dict[str, Any]:
        held = self.worst_case(body) if self.budget.active or self._tpm else (0, 0.0)
        if self.budget.active:
            self.budget.reserve(*held)
        try:
            completion = await self._post(key, body, number, held[0])
        except BaseException:  # errors are not billed: release the hold
            if self.budget.active:
                self.budget.settle(held[0], held[1], 0, 0.0)
            raise
        tokens = _usage(completion)
        if self.budget.active:
            cost = call_cost(body["model"], tokens["prompt_tokens"], tokens["completion_tokens"], self.ledger.prices)
            self.budget.settle(held[0], held[1], sum(tokens.values()), cost)
        choice = completion["choices"][0]
        text = (choice.get("message") or {}).get("content") or ""
        return {"text": text, "finish_reason": choice.get("finish_reason"), "usage": tokens}

    async def _post(self, key: str, body: dict[str, Any], number: int, tokens: int) -> dict[str, Any]:
        """One HTTP attempt under pacing, the adaptive limit and the refusal guard; a ledger line either way."""
        if self._rpm:
            await self._rpm.acquire()
        if self._tpm:
            await self._tpm.acquire(tokens)
        probing = await self.refusals.enter()
        outcome: BaseException | None = None
        try:
            return await self._send_once(key, body, number)
        except Exception as exc:
            outcome = exc
            raise
        finally:
            await self.refusals.leave(probing, outcome)  # raises the stage's stop when this refusal trips it

    def _refusal(self, exc: EndpointStatusError, model: str) -> Refused | SetupError:
        """A refused request as `Refused`, or a SetupError when the status is never about one request."""
        if exc.status in ALWAYS_FATAL:
            return SetupError(f"{self.base_url} model '{model}': {ALWAYS_FATAL[exc.status]}")
        return Refused.of(exc, self._key)

    async def _send_once(self, key: str, body: dict[str, Any], number: int) -> dict[str, Any]:
        sent_at = await self.limit.acquire()
        throttled = False
        try:
            start = time.perf_counter()
            try:
                completion = await self.endpoints.post("/chat/completions", {**body, **self.extra_body})
                if not isinstance(completion, dict) or not completion.get("choices"):
                    raise TransientError("reply has no choices")
            except Exception as exc:
                throttled = isinstance(exc, EndpointStatusError) and exc.status == 429
                if throttled and exc.retry_after:
                    self.limit.pause(min(exc.retry_after, self.settings.retry_max_wait_s))
                refusal = self._refusal(exc, body["model"]) if is_refusal(exc) else None
                self.ledger.record(
                    stage=self.stage,
                    model=body["model"],
                    cache_key=key,
                    cached=False,
                    ok=False,
                    attempt=number,
                    latency_s=time.perf_counter() - start,
                    error=_describe(exc) if refusal is None or isinstance(refusal, SetupError) else str(refusal),
                )
                if refusal is not None:
                    raise refusal from None
                raise
        finally:
            self.limit.release(sent_at, throttled=throttled)
        self.ledger.record(
            stage=self.stage,
            model=body["model"],
            cache_key=key,
            cached=False,
            ok=True,
            attempt=number,
            latency_s=time.perf_counter() - start,
            **_usage(completion),
        )
        return completion

    async def aclose(self) -> None:
        self._flush_refusals()
        await self.endpoints.aclose()


def _start_budget(client: LLMClient, llm: LLMSettings, ledger_path: Path | None) -> None:
    """Count what the run's ledger already spent against the caps, and warn if dollars can't be counted."""
    if (llm.max_cost_usd is not None or llm.prices) and price_of(client.model, llm.prices) is None:
        warnings.warn(
            f"no price for model '{client.model}' in llm.prices: its calls are recorded at $0"
            + (" and llm.max_cost_usd cannot stop them" if llm.max_cost_usd is not None else ""),
            stacklevel=3,
        )
    if client.budget.active and ledger_path is not None:
        spent = read_ledger(ledger_path)["all"]
        client.budget.spent_usd = spent.cost_usd
        client.budget.spent_tokens = spent.prompt_tokens + spent.completion_tokens


@asynccontextmanager
async def open_client(
    llm: LLMSettings,
    embedded: EmbeddedSettings,
    *,
    cache: ResponseCache,
    ledger: Ledger,
    ledger_path: Path | None = None,
    server_log: Path | None = None,
    seed: int = 0,
    key: str | None = None,
    stage: str = "",
    check: bool = True,
) -> AsyncIterator[LLMClient]:
    """A ready client for the configured endpoint, or for the embedded llama.cpp server when none is set.

    Takes only the sections it reads; where the cache and ledger live is the caller's (`runs.client.run_client`
    opens a run's). `ledger_path` is the ledger whose spending counts against the caps; `key` the API key, else
    the environment's `llm.api_key_env`. The embedded server is
    started here (logging to `server_log`) and stopped on exit, so no process outlives the block.
    """
    async with AsyncExitStack() as stack:
        extra: dict[str, Any] = {}
        if endpoint_kind(llm) == "embedded":
            from glan_utils.llm.embedded import EmbeddedServer  # imported lazily: remote runs need no llama.cpp

            server = stack.enter_context(
                EmbeddedServer(
                    model=embedded.model,
                    ctx=embedded.ctx,
                    parallel=embedded.parallel,
                    threads=embedded.threads,
                    log_path=server_log,
                )
            )
            base_url, model, endpoint_id = server.base_url, server.model, f"embedded:{embedded.model}"
            extra = dict(embedded.extra_body)
            # llama.cpp queues what its slots can't hold: more in flight only turns into client timeouts
            llm = llm.model_copy(
                update={"concurrency": min(llm.concurrency, 2 * embedded.parallel), "timeout_s": embedded.timeout_s}
            )
            slot_window: int | None = embedded.ctx // embedded.parallel
        else:
            slot_window = None
            if not llm.model:
                raise SetupError("llm.model is not set: name the model served by llm.base_url")
            base_url = llm.base_url or llm.base_urls[0]
            # replicas of one model answer alike: a pool's cache key names the model, not the replica that served
            endpoint_id = f"pool:{llm.model}" if llm.base_urls else base_url.rstrip("/")
            model = llm.model
        client = LLMClient(
            llm,
            base_url=base_url,
            model=model,
            cache=cache,
            ledger=ledger,
            endpoint_id=endpoint_id,
            key=key or api_key(llm),
            extra_body=extra,
            stage=stage,
            replicas=llm.base_urls or None,
            run_seed=seed,
            slot_window=slot_window,
        )
        stack.push_async_callback(client.aclose)
        _start_budget(client, llm, ledger_path)
        if check:
            await client.check()
        yield client
