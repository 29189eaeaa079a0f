"""OpenAI Batch API mode: plan a stage's calls, send them as batch files, and fill the response cache from the output.

The Batch API answers within a completion window (24 h) at half the price, which is how a 10M-pair run stays
affordable. The stage code does not change: `plan_calls` runs a stage's work function against the client in
recording mode (no HTTP), `run_batches` writes the recorded requests as JSONL files (custom_id = cache key),
uploads, submits, polls and puts every answer into the response cache and the ledger. Running the stage normally
afterwards then costs no online call: each `chat` is a cache hit. Replies that fail validation are re-asked online
by that normal run, as always. Submitted batch ids are saved in the run dir, so polling resumes after a restart.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from glan_utils.core.errors import GlanError
from glan_utils.llm.client import ChatResult, LLMClient
from glan_utils.llm.ledger import Ledger
from glan_utils.settings import BatchSettings, Price, api_key

DONE = {"completed", "failed", "expired", "cancelled"}


class BatchError(GlanError):
    """A batch that cannot be submitted or did not finish."""


@dataclass(frozen=True)
class PlannedCall:
    """One request the stage will make, keyed by the cache key its `chat` call will look up."""

    key: str
    body: dict[str, Any]


@dataclass
class BatchReport:
    """What the batches did: lines sent, answers cached, and failures left for the online run."""

    batch_ids: list[str] = field(default_factory=list)
    planned: int = 0
    already_cached: int = 0
    cached: int = 0
    failed: int = 0
    statuses: dict[str, str] = field(default_factory=dict)


@contextmanager
def recording(client: LLMClient) -> Iterator[list[PlannedCall]]:
    """While open, the client sends nothing: each cache miss is recorded and answered with a failure."""
    planned: list[PlannedCall] = []

    async def record(key: str, body: dict[str, Any], schema: Any, params: dict[str, Any]) -> ChatResult:
        planned.append(PlannedCall(key, {**body, **client.extra_body}))
        return ChatResult(ok=False, cache_key=key, error="planned for the Batch API", params=params)

    ledger, client.ledger = client.ledger, Ledger(None)  # planning is not spending: keep it out of the ledger
    client._fetch = record  # type: ignore[method-assign]
    try:
        yield planned
    finally:
        del client._fetch  # back to the class's method
        client.ledger = ledger


async def plan_calls(
    client: LLMClient, tasks: Iterable[Any], work: Callable[[Any], Awaitable[Any]]
) -> list[PlannedCall]:
    """The uncached calls `work(task)` makes for each task, without sending any (duplicates removed)."""
    with recording(client) as planned:
        await asyncio.gather(*(work(task) for task in tasks))
    return list({p.key: p for p in planned}.values())


def write_batch_files(planned: list[PlannedCall], directory: Path, max_lines: int) -> list[Path]:
    """JSONL files in the Batch API's input format, at most `max_lines` requests each."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, len(planned), max_lines):
        path = directory / f"batch-{start // max_lines:04d}.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for call in planned[start : start + max_lines]:
                line = {"custom_id": call.key, "method": "POST", "url": "/v1/chat/completions", "body": call.body}
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
        paths.append(path)
    return paths


async def submit(sdk: openai.AsyncOpenAI, paths: list[Path], window: str) -> list[str]:
    """Upload each file and create its batch; returns the batch ids."""
    ids = []
    for path in paths:
        with path.open("rb") as handle:
            uploaded = await sdk.files.create(file=handle, purpose="batch")
        batch = await sdk.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window=window
        )  # type: ignore[arg-type]
        ids.append(batch.id)
    return ids


async def wait(sdk: openai.AsyncOpenAI, batch_ids: list[str], poll_s: float, timeout_s: float | None) -> list[Any]:
    """Poll until every batch is done (completed, failed, expired or cancelled) or the timeout passes."""
    deadline = time.monotonic() + timeout_s if timeout_s else None
    while True:
        batches = [await sdk.batches.retrieve(i) for i in batch_ids]
        if all(b.status in DONE for b in batches):
            return batches
        if deadline and time.monotonic() > deadline:
            pending = [b.id for b in batches if b.status not in DONE]
            raise BatchError(
                f"batches still running after {timeout_s:.0f} s: {', '.join(pending)} "
                "(run again later: polling resumes from the run dir)"
            )
        await asyncio.sleep(poll_s)


def _reply(line: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, int], str | None]:
    """(cache value, token usage, error) from one output line."""
    response = line.get("response") or {}
    body = response.get("body") or {}
    usage = body.get("usage") or {}
    tokens = {
        "prompt_tokens": usage.get("prompt_tokens") or 0,
        "completion_tokens": usage.get("completion_tokens") or 0,
    }
    if response.get("status_code") != 200 or not body.get("choices"):
        return None, tokens, f"HTTP {response.get('status_code')}"
    choice = body["choices"][0]
    text = (choice.get("message") or {}).get("content") or ""
    return {"text": text, "finish_reason": choice.get("finish_reason"), "usage": tokens}, tokens, None


async def collect(sdk: openai.AsyncOpenAI, batch: Any, client: LLMClient, ledger: Ledger, report: BatchReport) -> None:
    """Put every successful answer of a finished batch into the cache; record each line in the ledger."""
    report.statuses[batch.id] = batch.status
    if not batch.output_file_id:
        return
    content = await sdk.files.content(batch.output_file_id)
    for raw in content.text.splitlines():
        if not raw.strip():
            continue
        line = json.loads(raw)
        value, tokens, error = _reply(line)
        model = ((line.get("response") or {}).get("body") or {}).get("model") or client.model
        ledger.record(
            stage=client.stage,
            model=model,
            cache_key=line["custom_id"],
            cached=False,
            ok=error is None,
            error=error,
            **tokens,
        )
        if value is None:
            report.failed += 1
        else:
            client.cache.put(line["custom_id"], value)
            report.cached += 1


def discounted(prices: dict[str, Price], discount: float) -> dict[str, Price]:
    """The price table at the Batch API's rate."""
    return {
        m: Price(input_per_1m=p.input_per_1m * discount, output_per_1m=p.output_per_1m * discount)
        for m, p in prices.items()
    }


async def run_batches(
    client: LLMClient,
    planned: list[PlannedCall],
    run_dir: Path,
    settings: BatchSettings | None = None,
    key: str | None = None,
) -> BatchReport:
    """Send `planned` calls (those not cached yet) through the Batch API and cache the answers.

    Batch ids are saved to `run_dir/batches/<stage>.json` first, so a rerun resumes polling them instead of paying
    twice; remove that file to submit afresh.
    """
    settings = settings or BatchSettings()
    report = BatchReport(planned=len(planned))
    todo = [p for p in planned if client.cache.get(p.key) is None]
    report.already_cached = len(planned) - len(todo)
    state = run_dir / "batches" / f"{client.stage or 'stage'}.json"
    sdk = openai.AsyncOpenAI(
        base_url=client.base_url, api_key=key or api_key(client.settings) or "no-key", max_retries=3
    )
    ledger = Ledger(run_dir / "ledger.jsonl", discounted(client.settings.prices, settings.discount))
    try:
        if state.exists():
            report.batch_ids = json.loads(state.read_text())["batch_ids"]
        elif todo:
            paths = write_batch_files(todo, state.parent / (client.stage or "stage"), settings.max_requests_per_file)
            report.batch_ids = await submit(sdk, paths, settings.completion_window)
            state.write_text(json.dumps({"batch_ids": report.batch_ids, "requests": len(todo)}))
        for batch in await wait(sdk, report.batch_ids, settings.poll_interval_s, settings.timeout_s):
            await collect(sdk, batch, client, ledger, report)
        if state.exists():
            state.rename(state.with_suffix(".collected.json"))
    except openai.APIError as exc:
        raise BatchError(f"Batch API at {client.base_url}: {type(exc).__name__}: {exc}"[:300]) from None
    finally:
        ledger.close()
        await sdk.close()
    return report
