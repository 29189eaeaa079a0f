"""Where and how the model is called: endpoint, concurrency, limits, prices and the embedded llama.cpp server.

The API key is never a setting: only the *name* of the environment variable holding it is, so snapshots can't
leak it.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from glan_utils.core.section import Section

EndpointKind = Literal["embedded", "remote"]


class Price(Section):
    """US dollars per million tokens."""

    input_per_1m: float = Field(0.0, ge=0)
    output_per_1m: float = Field(0.0, ge=0)


def endpoint_url(value: str) -> str:
    """An endpoint URL is http(s)://host[:port]/...: a typo (`htp:/x`) is a config error, not a traceback later."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL such as https://api.openai.com/v1")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port") from None
    return value.strip()


EndpointUrl = Annotated[str, AfterValidator(endpoint_url)]


class LLMSettings(Section):
    """Where and how to call the model. `base_url: null` means the embedded local llama.cpp server."""

    base_url: EndpointUrl | None = Field(
        None, description="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1."
    )
    base_urls: list[EndpointUrl] = Field(
        default_factory=list,
        description="Several replicas serving the same model (e.g. "
        "vLLM on N GPUs): each call goes to the least busy; overrides base_url.",
    )
    model: str | None = Field(None, description="Model name sent to the endpoint (embedded: set automatically).")
    api_key_env: str = Field("OPENAI_API_KEY", description="Name of the environment variable holding the key.")
    mode: Literal["online", "batch"] = Field(
        "online",
        description="online: each call over HTTP; batch: a stage's uncached calls go through the OpenAI Batch API "
        "(half price, answered within the window; see the `batch` section), then the stage completes from the cache.",
    )
    concurrency: int = Field(
        128,
        ge=1,
        le=4096,
        description="Most requests in flight at once (the embedded server is capped at 2 x its slots). With no "
        "rate limit set the client starts here, halves on a 429 and grows back by one per round trip (AIMD).",
    )
    adaptive_concurrency: bool = Field(True, description="AIMD on 429s when no requests/tokens per minute is set.")
    requests_per_minute: float | None = Field(None, gt=0, description="Paced evenly (no start-up burst).")
    tokens_per_minute: float | None = Field(None, gt=0, description="Paced evenly by prompt + max_tokens estimate.")
    max_cost_usd: float | None = Field(
        None,
        gt=0,
        description="Budget of the run (ledger.jsonl so far included): no call is sent that could exceed it, "
        "calls in flight counted at their worst case; the stage stops with status 'stopped: budget'.",
    )
    max_tokens_total: int | None = Field(
        None, gt=0, description="Token cap of the run (prompt + completion), enforced like max_cost_usd."
    )
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(6, ge=0, description="Retries per call on 429/5xx/timeouts before recording a failure.")
    retry_max_wait_s: float = Field(60.0, gt=0)
    refusal_check_calls: int = Field(
        5,
        ge=1,
        description="A request the endpoint refuses (a 4xx about it: context length, content filter) is a failure "
        "of that item and the stage goes on. But when this many of a stage's first answered calls are refused the "
        "same way (same status, code and message: unknown model, a parameter the endpoint rejects), it is a setup "
        "error and the stage stops with the server's reason; until that is decided at most this many calls of the "
        "stage are in flight. A 401 (bad key) stops at once.",
    )
    resend_refused: bool = Field(
        False,
        description="Send again a request the endpoint refused on an earlier run. Off: a rerun fails it at once with "
        "the refusal, unless the request changed (another model, prompt or max_tokens, another embedded.ctx or "
        "llm.context_windows); refusals of a stage's first, undecided calls are never kept.",
    )
    refusal_check_share: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Share of those first calls that must be refused alike to stop the stage (1.0: all of them).",
    )
    structured_output: Literal["json_schema", "json_object", "none"] = "json_schema"
    extra_body: dict[str, Any] = Field(default_factory=dict, description="Extra request fields, e.g. repeat_penalty.")
    cache_path: str | None = Field(None, description="Response cache shared by runs; None = <output_dir>/cache.sqlite.")
    prices: dict[str, Price] = Field(
        default_factory=dict,
        description="Price table keyed by model name; a dated reply name (gpt-4o-mini-2024-07-18) takes its "
        "prefix's price.",
    )
    context_windows: dict[str, int] = Field(
        default_factory=dict,
        description="Context window (prompt + reply tokens) by model name, adding to and overriding the known "
        "defaults (llm/context.py: gpt-4o 128000, gpt-4.1 1047576, o3 200000, ...). A prompt whose estimate "
        "(3 UTF-8 bytes a token, an over-count) plus max_tokens exceeds it fails locally as 'refused (context "
        "window)', with no call; the judges trim long answers to fit. The embedded server's window, per slot, is "
        "embedded.ctx / embedded.parallel (the judges fit it; llama.cpp itself refuses a longer prompt). A model in "
        "neither is not checked.",
    )


class EmbeddedSettings(Section):
    """The local llama.cpp server used when no endpoint is configured."""

    model: str = Field("smollm2", description="'smollm2' or a path to a .gguf file.")
    ctx: int = Field(
        8192,
        ge=512,
        description="Tokens of context, shared by the `parallel` slots: each request has ctx / parallel (prompt and "
        "reply); a longer prompt fails locally and the judges trim long answers to fit.",
    )
    parallel: int = Field(4, ge=1)
    threads: int = Field(2, ge=1)
    timeout_s: float = Field(
        600.0,
        gt=0,
        description="Seconds per request to the embedded server, in place of llm.timeout_s: a CPU model queues "
        "requests behind its slots and slows down when the machine is busy.",
    )
    extra_body: dict[str, Any] = Field(
        default_factory=lambda: {"repeat_penalty": 1.1},
        description="Sampling extras for llama.cpp (a small model loops without).",
    )


def api_key(settings: LLMSettings) -> str | None:
    """The key from the environment only; never stored on the settings object."""
    return os.environ.get(settings.api_key_env) or None


def endpoint_kind(settings: LLMSettings) -> EndpointKind:
    """'remote' when calls go to a configured endpoint (or a pool of them), 'embedded' for the llama.cpp model."""
    return "remote" if settings.base_url is not None or settings.base_urls else "embedded"
