"""A real, scriptable OpenAI-compatible HTTP server on loopback, for tests and benchmarks.

It speaks enough of the OpenAI API (chat, completions with logprobs, models, files + batches) for the SDK,
lm-eval and our own clients, and can be told to misbehave: a queue of scripted behaviours (429, 500, reset,
malformed JSON, prose-wrapped JSON, ...) or seeded random faults. It counts what it served, so tests can
assert on retries, and runs in a background thread (`with OpenAIServer() as srv: srv.base_url`) or as a
process (`python -m glan_utils.testing.openai_server`; `GET /stats` and `POST /stats/reset` read its counts).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import threading
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable, Mapping
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Self

from aiohttp import web

from glan_utils.testing.fake_batches import BatchStore
from glan_utils.testing.fake_payloads import (
    Responder,
    chat_completion,
    chat_content,
    completion,
    error_body,
    message_text,
    until_stop,
    word_count,
)
from glan_utils.testing.fake_tokenizer import WordTokenizer

DEFAULT_FAULT_KINDS = ("429", "500", "503", "reset", "malformed", "prose", "truncated", "wrong_schema")
# Refusals: 4xx replies as OpenAI, Azure and llama.cpp send them. `{tokens}` is the request's word count, so a
# context-length refusal names the request (its message differs per request) as a real server's does.
_REFUSALS: dict[str, tuple[int, str, str, str | int | None]] = {
    "context_length": (
        400,
        "This model's maximum context length is 2048 tokens. However, your messages resulted in {tokens} tokens. "
        "Please reduce the length of the messages.",
        "invalid_request_error",
        "context_length_exceeded",
    ),
    "llama_context": (
        400,
        "request ({tokens} tokens) exceeds the available context size (2048 tokens), try increasing it",
        "exceed_context_size_error",
        400,
    ),
    "content_filter": (
        400,
        "The response was filtered due to the prompt triggering the content management policy (fake server).",
        "invalid_request_error",
        "content_filter",
    ),
    "bad_param": (
        400,
        "Unsupported value: 'temperature' does not support this value with this model (fake server).",
        "invalid_request_error",
        "unsupported_value",
    ),
    "unauthorized": (401, "Incorrect API key provided (fake server)", "invalid_request_error", "invalid_api_key"),
    "forbidden": (403, "You are not allowed to use this model (fake server)", "permission_error", None),
    "not_found": (404, "The model does not exist or you do not have access to it.", "invalid_request_error", None),
}
# `timeout` hangs (for `hang_s`), so chaos mode leaves it out unless asked; refusals are scripted or `refuse`d.
KINDS = ("ok", "text", "timeout", *DEFAULT_FAULT_KINDS, *_REFUSALS)
_ERRORS = {
    "429": (429, "Rate limit reached for requests (fake server)", "requests", "rate_limit_exceeded"),
    "500": (500, "The server had an error while processing your request (fake server)", "server_error", None),
    "503": (503, "The engine is currently overloaded (fake server)", "server_error", None),
}


@dataclass(frozen=True)
class Behavior:
    """How the server answers one chat request; `content` overrides the generated text for content kinds."""

    kind: str = "ok"
    retry_after: float | None = None
    content: str | None = None
    hang_s: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown behaviour kind {self.kind!r}; expected one of {', '.join(KINDS)}")


def _refused(kind: str, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """(error body, HTTP status) of the refusal `kind` for this request."""
    status, message, type_, code = _REFUSALS[kind]
    tokens = sum(word_count(message_text(m)) for m in body.get("messages") or [])
    return error_body(message.format(tokens=tokens), type_, code), status


class OpenAIServer:
    """Fake OpenAI endpoint on 127.0.0.1; see the module docstring. Configure it before `start()`."""

    def __init__(
        self,
        models: Iterable[str] = ("fake-model",),
        *,
        api_key: str | None = None,
        latency_s: float = 0.0,
        max_concurrency: int | None = None,
        fault_rate: float = 0.0,
        fault_kinds: Iterable[str] = DEFAULT_FAULT_KINDS,
        seed: int = 0,
        retry_after: float = 1.0,
        hang_s: float = 30.0,
        batch_delay_s: float = 0.0,
        throttle_above: int | None = None,
        refuse: Mapping[str, str] | None = None,
        responder: Responder | None = None,
        sure_of: str = "",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.models = list(models)
        self.api_key, self.latency_s, self.max_concurrency = api_key, latency_s, max_concurrency
        self.fault_rate, self.fault_kinds = fault_rate, [Behavior(k).kind for k in fault_kinds]
        self.retry_after, self.hang_s, self.responder = retry_after, hang_s, responder
        self.sure_of = sure_of  # words the fake model is sure of in log-likelihood requests (settable per test)
        # like a provider's concurrency limit: a chat request arriving with this many in flight gets a 429
        self.throttle_above = throttle_above
        # {text: refusal kind}: a chat request whose messages contain the text is refused that way, every time
        self.refuse = {text: Behavior(kind).kind for text, kind in (refuse or {}).items()}
        self.host, self.port = host, port
        self.batches = BatchStore(answer=self._answer_batch_line, delay_s=batch_delay_s)
        self.tokenizer = WordTokenizer()
        self._rng = random.Random(seed)
        self._script: deque[Behavior] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._slots: asyncio.Semaphore | None = None
        self.reset_stats()

    # ----- scripting and introspection -----
    def script(self, *behaviors: str | Behavior) -> Self:
        """Queue behaviours, consumed one per chat request (or generating completion request) before chaos mode or
        `ok` apply."""
        self._script.extend(b if isinstance(b, Behavior) else Behavior(b) for b in behaviors)
        return self

    def reset_stats(self) -> None:
        """Forget received requests and counts; the peak restarts from the current in-flight count."""
        with self._lock:
            self.requests: list[dict[str, Any]] = []
            self.count = 0
            self.counts_by_kind: Counter[str] = Counter()
            self.in_flight = getattr(self, "in_flight", 0)
            self.peak_in_flight = self.in_flight

    def stats(self) -> dict[str, Any]:
        """Counts as plain JSON, as served by `GET /stats`."""
        with self._lock:
            return {
                "count": self.count,
                "counts_by_kind": dict(self.counts_by_kind),
                "peak_in_flight": self.peak_in_flight,
                "in_flight": self.in_flight,
            }

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. http://127.0.0.1:PORT/v1 (valid once started)."""
        return f"http://{self.host}:{self.port}/v1"

    # ----- lifecycle -----
    def start(self) -> Self:
        """Serve from a background thread with its own event loop; returns once the port is bound."""
        if self._thread is not None:
            return self
        ready: Future[int] = Future()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="fake-openai-server", daemon=True)
        self._thread.start()
        try:
            self.port = ready.result(timeout=10)
        except BaseException:
            self._thread.join()
            self._thread = None
            raise
        return self

    def stop(self) -> None:
        """Stop serving (hung requests are cancelled) and join the thread."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, ready: Future[int]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            ready.set_result(loop.run_until_complete(self._bind()))
        except Exception as exc:  # re-raised by start() in the caller's thread
            ready.set_exception(exc)
            loop.close()
            return
        loop.run_forever()
        assert self._runner is not None
        loop.run_until_complete(self._runner.cleanup())
        leftovers = asyncio.all_tasks(loop)  # requests still hanging past the shutdown timeout
        for task in leftovers:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.close()

    async def _bind(self) -> int:
        self._slots = asyncio.Semaphore(self.max_concurrency) if self.max_concurrency else None
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port, backlog=1024).start()
        return self._runner.addresses[0][1]

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth], client_max_size=256 * 1024**2)
        app.add_routes(
            [
                web.post("/v1/chat/completions", self._chat),
                web.post("/v1/completions", self._completions),
                web.get("/v1/models", self._models),
                *self.batches.routes(),
                *self.tokenizer.routes(),
                web.get("/stats", self._stats),
                web.post("/stats/reset", self._reset_stats),
            ]
        )
        return app

    # ----- bookkeeping -----
    def _record(self, kind: str, body: dict[str, Any] | None = None) -> None:
        with self._lock:
            self.count += 1
            self.counts_by_kind[kind] += 1
            if body is not None:
                self.requests.append(body)

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """Hold a concurrency slot, count it in flight, and wait the configured latency."""
        if self._slots is not None:
            await self._slots.acquire()
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            yield
        finally:
            with self._lock:
                self.in_flight -= 1
            if self._slots is not None:
                self._slots.release()

    def _next_behavior(self) -> Behavior:
        if self._script:
            return self._script.popleft()
        if self.fault_rate and self.fault_kinds and self._rng.random() < self.fault_rate:
            return Behavior(self._rng.choice(self.fault_kinds))
        return Behavior("ok")

    # ----- handlers -----
    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        authorized = request.headers.get("Authorization") == f"Bearer {self.api_key}"
        if self.api_key and request.path.startswith("/v1/") and not authorized:
            self._record("unauthorized")
            body = error_body("Incorrect API key provided (fake server)", "invalid_request_error", "invalid_api_key")
            return web.json_response(body, status=401)
        return await handler(request)

    async def _json_body(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._record("bad_request")
            return web.json_response(
                error_body("Request body is not a JSON object", "invalid_request_error"), status=400
            )
        if body.get("model") not in self.models:
            self._record("model_not_found", body)
            message = f"The model `{body.get('model')}` does not exist or you do not have access to it."
            return web.json_response(error_body(message, "invalid_request_error", "model_not_found"), status=404)
        return body

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        if isinstance(body, web.Response):
            return body
        if self.throttle_above is not None and self.in_flight >= self.throttle_above:
            self._record("throttled", body)
            _, message, type_, code = _ERRORS["429"]
            headers = {"Retry-After": f"{self.retry_after:g}"}
            return web.json_response(error_body(message, type_, code), status=429, headers=headers)
        async with self._slot():
            behavior = self._refusal_for(body) or self._next_behavior()
            self._record(behavior.kind, body)
            return await self._behave(request, body, behavior)

    def _refusal_for(self, body: dict[str, Any]) -> Behavior | None:
        text = " ".join(message_text(m) for m in body.get("messages") or [])
        return next((Behavior(kind) for needle, kind in self.refuse.items() if needle in text), None)

    async def _behave(self, request: web.Request, body: dict[str, Any], behavior: Behavior) -> web.StreamResponse:
        kind = behavior.kind
        if kind in _REFUSALS:
            reply, status = _refused(kind, body)
            return web.json_response(reply, status=status)
        if kind in _ERRORS:
            status, message, type_, code = _ERRORS[kind]
            retry = behavior.retry_after if behavior.retry_after is not None else self.retry_after
            headers = {"Retry-After": f"{retry:g}"} if kind == "429" else None
            return web.json_response(error_body(message, type_, code), status=status, headers=headers)
        if kind == "reset":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # nothing can be written; let aiohttp drop the handler quietly
        if kind == "malformed":
            return web.Response(
                text='{"id": "chatcmpl-broken", "choices": [{"message": {"con',
                content_type="application/json",
            )
        if kind == "timeout":
            await asyncio.sleep(behavior.hang_s if behavior.hang_s is not None else self.hang_s)
        contents = [
            until_stop(chat_content(body, kind, i, behavior.content, self.responder), body)
            for i in range(body.get("n") or 1)
        ]
        return web.json_response(chat_completion(body, contents, "length" if kind == "truncated" else "stop"))

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        if isinstance(body, web.Response):
            return body
        async with self._slot():
            # a scripted text reply answers a generation (not an echo for log-likelihoods), cut at its stops
            scripted = self._script.popleft() if self._script and not body.get("echo") else None
            self._record(scripted.kind if scripted else "ok", body)
            sure_of = frozenset(self.sure_of.split())
            content = scripted.content if scripted else None
            return web.json_response(completion(body, self.tokenizer.decode, content, sure_of))

    async def _models(self, _: web.Request) -> web.Response:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    def _answer_batch_line(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("model") not in self.models:
            self._record("model_not_found", body)
            return 404, error_body(f"The model `{body.get('model')}` does not exist.", "invalid_request_error")
        behavior = self._refusal_for(body) or self._next_behavior()  # scripted faults reach batch lines too
        self._record("batch", body)
        if behavior.kind in _REFUSALS:
            reply, status = _refused(behavior.kind, body)
            return status, reply
        if behavior.kind in _ERRORS:
            status, message, type_, code = _ERRORS[behavior.kind]
            return status, error_body(message, type_, code)
        kind = behavior.kind if behavior.kind in ("text", "prose", "truncated", "wrong_schema") else "ok"
        content = chat_content(body, kind, 0, behavior.content, self.responder)
        return 200, chat_completion(body, [content], "length" if kind == "truncated" else "stop")

    async def _stats(self, _: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _reset_stats(self, request: web.Request) -> web.Response:
        self.reset_stats()
        return await self._stats(request)


def main(argv: list[str] | None = None) -> None:
    """CLI: print the base URL as the first stdout line, then serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible server for tests and benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--model", action="append", help="served model name (repeatable; default fake-model)")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds of delay per request")
    parser.add_argument("--max-concurrency", type=int, default=None)
    parser.add_argument("--fault-rate", type=float, default=0.0, help="probability of a random fault per chat call")
    parser.add_argument("--fault-kinds", default=",".join(DEFAULT_FAULT_KINDS), help="comma-separated kinds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds sent with a 429")
    parser.add_argument("--hang", type=float, default=30.0, help="seconds a `timeout` fault hangs")
    parser.add_argument("--batch-delay", type=float, default=0.0, help="seconds until a batch completes")
    parser.add_argument(
        "--refuse",
        action="append",
        default=[],
        metavar="TEXT=KIND",
        help=f"refuse chat requests whose messages contain TEXT (empty: all) as KIND, one of {', '.join(_REFUSALS)}",
    )
    args = parser.parse_args(argv)
    try:
        server = _server_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with server:
        print(server.base_url, flush=True)
        stop.wait()


def _server_from_args(args: argparse.Namespace) -> OpenAIServer:
    return OpenAIServer(
        args.model or ["fake-model"],
        api_key=args.api_key,
        latency_s=args.latency,
        max_concurrency=args.max_concurrency,
        fault_rate=args.fault_rate,
        fault_kinds=[k for k in args.fault_kinds.split(",") if k],
        seed=args.seed,
        retry_after=args.retry_after,
        hang_s=args.hang,
        batch_delay_s=args.batch_delay,
        refuse=dict(rule.rpartition("=")[::2] for rule in args.refuse),
        host=args.host,
        port=args.port,
    )


if __name__ == "__main__":
    main()
