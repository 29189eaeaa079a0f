"""OpenAI Batch API mode (`llm.mode: batch`): a stage's uncached calls go out as batch files at half price.

The stage code does not change. A *plan pass* runs the stage's work with the client's transport set to record
each request into a JSONL file (≤ 50,000 lines, ≤ 200 MB, one model) instead of sending it; the files are uploaded
and submitted, each batch id saved the moment `create` returns; finished batches are downloaded as they end. The
stage then runs normally with a transport that answers from the downloaded replies, so every reply goes through
the client's own validation before it is cached: a truncated or schema-invalid batch reply is re-asked like an
online one. Lines a failed, expired or cancelled batch did not answer are planned again in the next wave
(`batch.remainder: resubmit`) or left to the online run (`online`).

Everything lives in `batches/<stage>.sqlite` in the run dir (lines by custom_id, files and their batch ids,
replies), so a run killed while submitting or polling resumes without resubmitting, and collecting twice records
nothing twice. Contract: https://platform.openai.com/docs/guides/batch and openai-python's `types/batch.py`.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import openai

from glan_utils.core.errors import GlanError
from glan_utils.core.ids import content_hash
from glan_utils.llm.client import Deferred, LLMClient
from glan_utils.llm.ledger import Ledger, price_of
from glan_utils.settings import BatchSettings, api_key

DONE = {"completed", "failed", "expired", "cancelled"}
SCHEMA = """
CREATE TABLE IF NOT EXISTS lines (custom_id TEXT PRIMARY KEY, file INTEGER NOT NULL, status TEXT NOT NULL,
                                  reply TEXT);
CREATE INDEX IF NOT EXISTS lines_by_file ON lines (file, status);
CREATE TABLE IF NOT EXISTS files (file INTEGER PRIMARY KEY, path TEXT NOT NULL, model TEXT NOT NULL,
                                  lines INTEGER DEFAULT 0, bytes INTEGER DEFAULT 0, tokens INTEGER DEFAULT 0,
                                  sealed INTEGER DEFAULT 0, file_id TEXT, batch_id TEXT, status TEXT,
                                  collected INTEGER DEFAULT 0, submitted_at REAL, finished_at REAL, errors TEXT);
"""


class BatchError(GlanError):
    """A batch that cannot be submitted or did not finish in time."""


@dataclass
class BatchReport:
    """What the Batch API did for a stage: lines planned and answered, batches by status, their errors."""

    waves: int = 0
    planned: int = 0
    answered: int = 0
    failed_lines: int = 0
    submitted: int = 0
    statuses: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class BatchState:
    """The stage's batch bookkeeping in one SQLite file; every change commits at once (kill-safe)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.dir = path, path.with_suffix("")
        self.db = sqlite3.connect(path, isolation_level=None, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def one(self, sql: str, *args: Any) -> Any:
        row = self.db.execute(sql, args).fetchone()
        return row[0] if row else None

    def reply(self, custom_id: str) -> dict[str, Any] | None:
        raw = self.one("SELECT reply FROM lines WHERE custom_id = ? AND status = 'answered'", custom_id)
        return json.loads(raw) if raw else None

    def known(self, custom_id: str) -> bool:
        return self.one("SELECT 1 FROM lines WHERE custom_id = ?", custom_id) is not None

    def files(self, where: str = "1") -> list[dict[str, Any]]:
        cursor = self.db.execute(f"SELECT * FROM files WHERE {where} ORDER BY file")
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def update(self, file: int, **values: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        self.db.execute(f"UPDATE files SET {sets} WHERE file = ?", (*values.values(), file))

    def discard_unsubmitted(self) -> None:
        """Files never turned into a batch cost nothing: forget them (and their lines) so they are planned anew."""
        for row in self.files("batch_id IS NULL"):
            self.db.execute("DELETE FROM lines WHERE file = ?", (row["file"],))
            self.db.execute("DELETE FROM files WHERE file = ?", (row["file"],))
            Path(row["path"]).unlink(missing_ok=True)

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM lines GROUP BY status").fetchall())

    def close(self) -> None:
        self.db.close()


class FileWriter:
    """Appends planned requests to the open batch file, starting a new one at the line, byte, token or model limit."""

    def __init__(self, state: BatchState, settings: BatchSettings) -> None:
        self.state, self.settings = state, settings
        self.file: dict[str, Any] | None = None
        self.handle: IO[bytes] | None = None
        self.planned = 0

    def add(self, custom_id: str, body: dict[str, Any], tokens: int) -> None:
        line = {"custom_id": custom_id, "method": "POST", "url": self.settings.endpoint, "body": body}
        data = (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")
        if self._full(len(data), tokens, body["model"]):
            self.seal()
        if self.file is None:
            self._open(body["model"])
        assert self.file is not None and self.handle is not None
        self.handle.write(data)
        self.file.update(lines=self.file["lines"] + 1, bytes=self.file["bytes"] + len(data))
        self.file["tokens"] += tokens
        self.state.db.execute(
            "INSERT INTO lines (custom_id, file, status) VALUES (?, ?, 'pending')", (custom_id, self.file["file"])
        )
        self.planned += 1

    def _full(self, size: int, tokens: int, model: str) -> bool:
        if self.file is None:
            return False
        cap = self.settings.max_enqueued_tokens
        return (
            self.file["lines"] >= self.settings.max_requests_per_file
            or self.file["bytes"] + size > self.settings.max_bytes_per_file
            or (cap is not None and self.file["tokens"] + tokens > cap)
            or self.file["model"] != model  # one model per file, or the batch fails with model_mismatch
        )

    def _open(self, model: str) -> None:
        number = (self.state.one("SELECT MAX(file) FROM files") or 0) + 1
        self.state.dir.mkdir(parents=True, exist_ok=True)
        path = self.state.dir / f"batch-{number:05d}.jsonl"
        self.state.db.execute("INSERT INTO files (file, path, model) VALUES (?, ?, ?)", (number, str(path), model))
        self.file = {"file": number, "model": model, "lines": 0, "bytes": 0, "tokens": 0}
        self.handle = path.open("wb")

    def seal(self) -> None:
        """Close the open file: it is complete on disk and may be submitted."""
        if self.file is None or self.handle is None:
            return
        self.handle.close()
        self.state.update(
            self.file["file"], lines=self.file["lines"], bytes=self.file["bytes"], tokens=self.file["tokens"], sealed=1
        )
        self.file = self.handle = None


def _estimate_tokens(body: dict[str, Any]) -> int:
    """A request's tokens as the enqueued-token limit counts them: prompt (~4 characters a token) + max_tokens."""
    chars = sum(len(str(m.get("content") or "")) for m in body.get("messages", []))
    return chars // 4 + int(body.get("max_tokens") or 1024)


def custom_id(body: dict[str, Any]) -> str:
    """A line's id: the hash of its full body, so a re-ask (other messages) is a different line."""
    return content_hash(body, length=32)


class Recorder:
    """Plan-pass transport: answers from collected replies, otherwise records the request and defers it."""

    def __init__(self, client: LLMClient, state: BatchState, writer: FileWriter) -> None:
        self.client, self.state, self.writer = client, state, writer

    async def __call__(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        full = {**body, **self.client.extra_body}
        cid = custom_id(full)
        reply = self.state.reply(cid)
        if reply is not None:
            return reply
        if self.state.known(cid):
            raise Deferred("in a batch not finished yet")
        self.writer.add(cid, full, _estimate_tokens(full))
        raise Deferred("planned for the Batch API")


class Replay:
    """Stage-run transport: the collected reply for this exact request, else the online call or a failure."""

    def __init__(self, client: LLMClient, state: BatchState, online: bool) -> None:
        self.client, self.state, self.online = client, state, online

    async def __call__(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = self.state.reply(custom_id({**body, **self.client.extra_body}))
        if reply is not None:
            return reply
        if self.online:
            return await self.client.send(key, body)
        raise Deferred("not answered by the Batch API (rerun to plan it again, or set batch.remainder: online)")


def _reply(line: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, int], str | None]:
    """(reply, token usage, error) from one output or error-file line."""
    response = line.get("response") or {}
    body = response.get("body") or {}
    usage = body.get("usage") or {}
    tokens = {
        "prompt_tokens": usage.get("prompt_tokens") or 0,
        "completion_tokens": usage.get("completion_tokens") or 0,
    }
    if response.get("status_code") != 200 or not body.get("choices"):
        error = line.get("error") or (body.get("error") if isinstance(body, dict) else None) or {}
        code = error.get("code") if isinstance(error, dict) else None
        return None, tokens, f"batch line: {code or 'HTTP ' + str(response.get('status_code'))}"
    choice = body["choices"][0]
    text = (choice.get("message") or {}).get("content") or ""
    return {"text": text, "finish_reason": choice.get("finish_reason"), "usage": tokens}, tokens, None


class Session:
    """Submits, polls and collects one stage's batch files through the SDK."""

    def __init__(self, client: LLMClient, state: BatchState, settings: BatchSettings, tags: dict[str, str]) -> None:
        self.client, self.state, self.settings, self.tags = client, state, settings, tags
        self.sdk = openai.AsyncOpenAI(
            base_url=client.base_url, api_key=api_key(client.settings) or "no-key", max_retries=3
        )
        self.report = BatchReport()
        self._held: dict[int, tuple[int, float]] = {}
        self.dropped = 0  # lines that ended unanswered: the next wave plans them again

    async def submit_ready(self) -> None:
        """Upload and create every sealed file not yet submitted, within the enqueued-token limit."""
        for row in self.state.files("sealed = 1 AND batch_id IS NULL"):
            await self._room_for(row["tokens"])
            self._reserve(row)
            if row["file_id"] is None:
                with Path(row["path"]).open("rb") as handle:
                    uploaded = await self.sdk.files.create(file=handle, purpose="batch")
                self.state.update(row["file"], file_id=uploaded.id)
                row["file_id"] = uploaded.id
            batch = await self.sdk.batches.create(
                input_file_id=row["file_id"],
                endpoint=self.settings.endpoint,  # type: ignore[arg-type]
                completion_window=self.settings.completion_window,  # type: ignore[arg-type]
                metadata={**self.tags, "glan_file": str(row["file"])},
            )
            self.state.update(row["file"], batch_id=batch.id, status=batch.status, submitted_at=time.time())
            self.report.submitted += 1

    def _reserve(self, row: dict[str, Any]) -> None:
        """Hold a file's worst case against the budget until it is collected (BudgetExceeded if it does not fit)."""
        budget = self.client.budget
        if budget.active:
            price = price_of(row["model"], self.client.settings.prices)
            rate = max(price.input_per_1m, price.output_per_1m) if price else 0.0
            held = (row["tokens"], row["tokens"] * rate / 1e6 * self.settings.discount)
            budget.reserve(*held)
            self._held[row["file"]] = held

    async def _room_for(self, tokens: int) -> None:
        cap = self.settings.max_enqueued_tokens
        while cap is not None:
            queued = self.state.one(
                "SELECT COALESCE(SUM(tokens), 0) FROM files WHERE batch_id IS NOT NULL AND collected = 0"
            )
            if queued == 0 or queued + tokens <= cap:
                return
            await self.poll_once()
            await asyncio.sleep(self.settings.poll_interval_s)

    async def reconcile(self) -> None:
        """Adopt a batch created for an uploaded file whose id a kill kept us from saving (found by metadata)."""
        orphans = {r["file_id"]: r["file"] for r in self.state.files("file_id IS NOT NULL AND batch_id IS NULL")}
        if not orphans:
            return
        async for batch in self.sdk.batches.list(limit=100):
            if batch.input_file_id in orphans:
                self.state.update(orphans.pop(batch.input_file_id), batch_id=batch.id, status=batch.status)
            if not orphans:
                return

    async def poll_once(self) -> int:
        """Check every unfinished batch once, collecting those that ended; returns how many are still running."""
        running = 0
        for row in self.state.files("batch_id IS NOT NULL AND collected = 0"):
            batch = await self.sdk.batches.retrieve(row["batch_id"])
            self.report.statuses[batch.id] = batch.status
            if batch.status in DONE:
                await self._collect(row, batch)
            else:
                self.state.update(row["file"], status=batch.status)
                running += 1
        return running

    async def _collect(self, row: dict[str, Any], batch: Any) -> None:
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                content = await self.sdk.files.content(file_id)
                for raw in content.content.split(b"\n"):  # JSON strings may hold U+2028: split on newlines only
                    self._take(raw, row)
        errors = [f"{e.code}: {e.message}" for e in ((batch.errors.data or []) if batch.errors else [])]
        if errors:
            message = f"batch {batch.id} {batch.status}: {'; '.join(errors)[:300]}"
            self.report.errors.append(message)
            warnings.warn(message, stacklevel=2)
        # lines the batch did not answer (expired, cancelled, failed) are forgotten, so the next plan takes them
        dropped = self.state.db.execute("DELETE FROM lines WHERE file = ? AND status != 'answered'", (row["file"],))
        self.dropped += dropped.rowcount
        if row["file"] in self._held:
            self.client.budget.settle(*self._held.pop(row["file"]), 0, 0.0)
        self.state.update(
            row["file"], status=batch.status, collected=1, finished_at=time.time(), errors=json.dumps(errors)
        )

    def _take(self, raw: bytes, row: dict[str, Any]) -> None:
        """Record one output line once: its reply, and a ledger line at the batch price of the file's model."""
        if not raw.strip():
            return
        try:
            line = json.loads(raw)
        except ValueError:
            self.report.errors.append(f"unreadable line in the output of file {row['file']}")
            return
        cid = line.get("custom_id")
        if self.state.one("SELECT status FROM lines WHERE custom_id = ? AND file = ?", cid, row["file"]) != "pending":
            return  # unknown, or already collected by an interrupted earlier collect
        reply, tokens, error = _reply(line)
        status = "answered" if reply is not None else "failed"
        self.state.db.execute(
            "UPDATE lines SET status = ?, reply = ? WHERE custom_id = ?",
            (status, json.dumps(reply, ensure_ascii=False) if reply else None, cid),
        )
        before = self.client.ledger.totals.cost_usd
        self.client.ledger.record(
            stage=self.client.stage,
            model=row["model"],
            cache_key=cid,
            cached=False,
            ok=reply is not None,
            error=error,
            price_factor=self.settings.discount,
            **tokens,
        )
        self.client.budget.spent_tokens += sum(tokens.values())
        self.client.budget.spent_usd += self.client.ledger.totals.cost_usd - before
        if reply is not None:
            self.report.answered += 1
        else:
            self.report.failed_lines += 1

    async def wait(self, deadline: float | None) -> None:
        """Poll until no batch runs, collecting each as it ends; past the deadline, one clear error."""
        while await self.poll_once():
            if deadline is not None and time.monotonic() > deadline:
                running = [r["batch_id"] for r in self.state.files("batch_id IS NOT NULL AND collected = 0")]
                raise BatchError(
                    f"{len(running)} batches still running after {self.settings.timeout_s:.0f} s "
                    f"({', '.join(running[:3])}...): run again later, polling resumes from the run dir"
                )
            await asyncio.sleep(self.settings.poll_interval_s)

    async def aclose(self) -> None:
        await self.sdk.close()


async def plan_pass(tasks: Iterable[Any], work: Callable[[Any], Awaitable[Any]], concurrency: int) -> None:
    """Run `work` over every task with bounded concurrency; the results are dropped (only the requests count)."""
    window = asyncio.Semaphore(max(1, concurrency))

    async def one(task: Any) -> None:
        async with window:
            await work(task)

    pending: set[asyncio.Task[None]] = set()
    for task in tasks:
        await window.acquire()
        window.release()
        job = asyncio.create_task(one(task))
        pending.add(job)
        job.add_done_callback(pending.discard)
        if len(pending) >= 4 * concurrency:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    if pending:
        await asyncio.gather(*pending)


@asynccontextmanager
async def batch_mode(
    client: LLMClient,
    plan: Callable[[], Awaitable[None]],
    state_path: Path,
    settings: BatchSettings,
    tags: dict[str, str] | None = None,
) -> AsyncIterator[BatchReport]:
    """Send what `plan()` asks for through the Batch API in waves; inside the block the client answers from it.

    `plan()` runs the stage's work over its pending tasks (the client records instead of sending). On exit the
    client's transport is back to HTTP.
    """
    state = BatchState(state_path)
    session = Session(client, state, settings, tags or {})
    deadline = time.monotonic() + settings.timeout_s if settings.timeout_s else None
    try:
        await session.reconcile()
        for _wave in range(settings.max_waves):
            session.report.waves += 1
            session.dropped = 0
            planned = await _plan_wave(client, state, settings, plan)
            session.report.planned += planned
            await session.submit_ready()
            await session.wait(deadline)
            if (planned == 0 and session.dropped == 0) or settings.remainder == "online":
                break
        client.transport = Replay(client, state, online=settings.remainder == "online")
        yield session.report
    except openai.APIError as exc:
        raise BatchError(f"Batch API at {client.base_url}: {type(exc).__name__}: {exc}"[:300]) from None
    finally:
        client.transport = client.send
        await session.aclose()
        state.close()


async def _plan_wave(
    client: LLMClient, state: BatchState, settings: BatchSettings, plan: Callable[[], Awaitable[None]]
) -> int:
    """One plan pass: new requests land in sealed files; returns how many lines were planned."""
    state.discard_unsubmitted()
    writer = FileWriter(state, settings)
    ledger, client.ledger = client.ledger, Ledger(None)  # planning is not spending: cache hits stay out of it
    client.transport = Recorder(client, state, writer)
    try:
        await plan()
    finally:
        writer.seal()
        client.transport, client.ledger = client.send, ledger
    return writer.planned


async def cancel_batches(client: LLMClient, state_path: Path) -> list[str]:
    """Cancel every unfinished batch of a stage (the Batch API keeps their partial output); returns their ids."""
    state = BatchState(state_path)
    session = Session(client, state, BatchSettings(), {})
    try:
        ids = [r["batch_id"] for r in state.files("batch_id IS NOT NULL AND collected = 0")]
        for batch_id in ids:
            await session.sdk.batches.cancel(batch_id)
        return ids
    finally:
        await session.aclose()
        state.close()


def batch_status(state_path: Path) -> dict[str, Any]:
    """Batches submitted / running / done / failed, lines answered, and a naive ETA, from the state file only."""
    state = BatchState(state_path)
    try:
        files = state.files("batch_id IS NOT NULL")
        lines = state.counts()
        done = [f for f in files if f["collected"]]
        running = len(files) - len(done)
        eta = None
        if done and running:
            spans = [f["finished_at"] - f["submitted_at"] for f in done if f["finished_at"] and f["submitted_at"]]
            oldest = min((f["submitted_at"] or time.time()) for f in files if not f["collected"])
            eta = round(max(0.0, (sum(spans) / len(spans) if spans else 0.0) - (time.time() - oldest)))
        return {
            "submitted": len(files),
            "running": running,
            "completed": sum(f["status"] == "completed" for f in done),
            "failed": sum(f["status"] in ("failed", "expired", "cancelled") for f in done),
            "lines_pending": lines.get("pending", 0),
            "lines_answered": lines.get("answered", 0),
            "eta_s": eta,
        }
    finally:
        state.close()
