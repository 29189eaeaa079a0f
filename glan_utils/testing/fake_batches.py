"""In-memory Files + Batch API for the fake OpenAI server, behaving as the real API does where a run can tell.

A batch moves validating -> in_progress -> completed as time passes (done `delay_s` after creation). Like the
real API (openai-python `types/batch.py`, the batch guide): output lines come back out of input order and name a
dated model snapshot; a line that fails goes to the *error file*, not the output file; an input file over
`max_lines` / `max_bytes`, or a batch that would take the enqueued tokens past `enqueued_token_limit`, ends
`failed` with `errors.data` and no output; `expire_after=N` ends a batch `expired` after N answered lines (the
rest `batch_expired` in the error file); `cancel` ends it `cancelled` the same way. `list` pages by `after`.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from glan_utils.testing.fake_payloads import error_body, message_text, word_count

Answer = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]
RUNNING = ("validating", "in_progress", "finalizing", "cancelling")


@dataclass
class StoredFile:
    """An uploaded or generated file: its OpenAI `file` object plus its bytes."""

    meta: dict[str, Any]
    data: bytes


def _tokens(line: dict[str, Any]) -> int:
    """Enqueued tokens of one request, as the fake counts them: prompt words + max_tokens."""
    body = line.get("body") or {}
    return sum(word_count(message_text(m)) for m in body.get("messages", [])) + int(body.get("max_tokens") or 0)


@dataclass
class BatchStore:
    """Files and batches keyed by id; `answer` produces one response per batch line."""

    answer: Answer
    delay_s: float = 0.0
    model_suffix: str = "-2024-07-18"
    shuffle: bool = True
    expire_after: int | None = None
    max_lines: int = 50_000
    max_bytes: int = 200_000_000
    enqueued_token_limit: int | None = None
    files: dict[str, StoredFile] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    _started: dict[str, float] = field(default_factory=dict)
    _rng: random.Random = field(default_factory=lambda: random.Random(0))

    def add_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        """Store `data` and return its OpenAI `file` object."""
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        self.files[file_id] = StoredFile(meta, data)
        return meta

    def create_batch(self, request: dict[str, Any]) -> dict[str, Any]:
        """Register a batch over an uploaded input file; raises KeyError for an unknown file id."""
        input_file = self.files[request["input_file_id"]]
        batch_id = f"batch_{uuid.uuid4().hex[:24]}"
        now = int(time.time())
        lines = self._lines(input_file)
        self.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": request.get("endpoint", "/v1/chat/completions"),
            "errors": None,
            "input_file_id": input_file.meta["id"],
            "completion_window": request.get("completion_window", "24h"),
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelled_at": None,
            "expires_at": now + 86400,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": request.get("metadata"),
            "_tokens": sum(_tokens(line) for line in lines),
        }
        self._started[batch_id] = time.monotonic()
        problem = self._validate(input_file, lines, self.batches[batch_id]["_tokens"], batch_id)
        if problem:
            self._fail(self.batches[batch_id], *problem)
        return self._public(batch_id)

    def _validate(self, stored: StoredFile, lines: list[dict[str, Any]], tokens: int, batch_id: str) -> Any:
        if len(lines) > self.max_lines:
            return "too_many_tasks", f"The input file has {len(lines)} requests; the limit is {self.max_lines}."
        if len(stored.data) > self.max_bytes:
            return "file_too_large", f"The input file is {len(stored.data)} bytes; the limit is {self.max_bytes}."
        if self.enqueued_token_limit is not None:
            queued = sum(b["_tokens"] for i, b in self.batches.items() if i != batch_id and b["status"] in RUNNING)
            if queued + tokens > self.enqueued_token_limit:
                return "token_limit_exceeded", (
                    f"Enqueued token limit reached for fake-model. Limit: {self.enqueued_token_limit:,} enqueued "
                    "tokens. Please try again once some in_progress batches have been completed."
                )
        return None

    def _fail(self, batch: dict[str, Any], code: str, message: str) -> None:
        batch.update(
            status="failed",
            failed_at=int(time.time()),
            errors={"object": "list", "data": [{"code": code, "message": message, "line": None, "param": None}]},
        )

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        """The batch object with its status advanced to now; raises KeyError for an unknown id."""
        batch = self.batches[batch_id]
        elapsed = time.monotonic() - self._started[batch_id]
        if batch["status"] == "validating" and elapsed >= self.delay_s / 2:
            batch.update(status="in_progress", in_progress_at=int(time.time()))
        if batch["status"] == "in_progress" and elapsed >= self.delay_s:
            self._finish(batch, answered=self.expire_after, end="expired", code="batch_expired")
        if batch["status"] == "cancelling":
            self._finish(batch, answered=0, end="cancelled", code="batch_cancelled")
        return self._public(batch_id)

    def cancel(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches[batch_id]
        if batch["status"] in ("validating", "in_progress", "finalizing"):
            batch["status"] = "cancelling"
        return self._public(batch_id)

    def _public(self, batch_id: str) -> dict[str, Any]:
        return {k: v for k, v in self.batches[batch_id].items() if not k.startswith("_")}

    def _lines(self, stored: StoredFile) -> list[dict[str, Any]]:
        return [json.loads(line) for line in stored.data.split(b"\n") if line.strip()]

    def _finish(self, batch: dict[str, Any], answered: int | None, end: str, code: str) -> None:
        """Answer the first `answered` lines (all when None); the rest are `code` lines in the error file."""
        lines = self._lines(self.files[batch["input_file_id"]])
        if self.shuffle:
            self._rng.shuffle(lines)
        done = lines if answered is None or answered >= len(lines) else lines[:answered]
        outputs, errors = [], []
        for line in done:
            out = self._output_line(line)
            (outputs if out["response"]["status_code"] == 200 else errors).append(out)
        for line in lines[len(done) :]:
            errors.append(self._error_line(line, code))
        status = "completed" if len(done) == len(lines) else end
        updates: dict[str, Any] = {"status": status, f"{status}_at": int(time.time())}
        if outputs:
            updates["output_file_id"] = self._write(outputs, f"{batch['id']}_output.jsonl")
        if errors:
            updates["error_file_id"] = self._write(errors, f"{batch['id']}_error.jsonl")
        ok = len(outputs)
        batch.update(updates, request_counts={"total": len(lines), "completed": ok, "failed": len(lines) - ok})

    def _write(self, rows: list[dict[str, Any]], name: str) -> str:
        data = "".join(json.dumps(row) + "\n" for row in rows).encode()
        return self.add_file(data, name, "batch_output")["id"]

    def _output_line(self, line: dict[str, Any]) -> dict[str, Any]:
        status, body = self.answer(line.get("body", {}))
        if status == 200 and self.model_suffix:
            body = {**body, "model": f"{body.get('model', '')}{self.model_suffix}"}
        return {
            "id": f"batch_req_{uuid.uuid4().hex[:24]}",
            "custom_id": line.get("custom_id"),
            "response": {"status_code": status, "request_id": f"req_{uuid.uuid4().hex[:24]}", "body": body},
            "error": None,
        }

    def _error_line(self, line: dict[str, Any], code: str) -> dict[str, Any]:
        return {
            "id": f"batch_req_{uuid.uuid4().hex[:24]}",
            "custom_id": line.get("custom_id"),
            "response": None,
            "error": {"code": code, "message": f"This request could not be executed before the batch ended ({code})."},
        }

    def routes(self) -> list[web.RouteDef]:
        """The aiohttp routes of the Files and Batch endpoints, served from this store."""
        return [
            web.post("/v1/files", self._upload),
            web.get("/v1/files/{id}", self._file),
            web.get("/v1/files/{id}/content", self._file_content),
            web.post("/v1/batches", self._create),
            web.get("/v1/batches", self._list),
            web.get("/v1/batches/{id}", self._retrieve),
            web.post("/v1/batches/{id}/cancel", self._cancel),
        ]

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            return web.json_response(error_body("Missing multipart field 'file'", "invalid_request_error"), status=400)
        return web.json_response(self.add_file(upload.file.read(), upload.filename, str(form.get("purpose", ""))))

    async def _file(self, request: web.Request) -> web.Response:
        stored = self.files.get(request.match_info["id"])
        return web.json_response(stored.meta) if stored else _not_found("file", request.match_info["id"])

    async def _file_content(self, request: web.Request) -> web.Response:
        stored = self.files.get(request.match_info["id"])
        if stored is None:
            return _not_found("file", request.match_info["id"])
        return web.Response(body=stored.data, content_type="application/jsonl")

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            return web.json_response(self.create_batch(body))
        except KeyError:
            return _not_found("file", body.get("input_file_id"))

    async def _retrieve(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(self.get_batch(request.match_info["id"]))
        except KeyError:
            return _not_found("batch", request.match_info["id"])

    async def _cancel(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(self.cancel(request.match_info["id"]))
        except KeyError:
            return _not_found("batch", request.match_info["id"])

    async def _list(self, request: web.Request) -> web.Response:
        """Newest first, `limit` per page, `after` = the last id of the previous page."""
        ids = list(reversed(self.batches))
        after = request.query.get("after")
        if after in ids:
            ids = ids[ids.index(after) + 1 :]
        limit = int(request.query.get("limit", 20))
        page = [self.get_batch(i) for i in ids[:limit]]
        return web.json_response(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(ids) > limit,
            }
        )


def _not_found(what: str, ident: Any) -> web.Response:
    return web.json_response(error_body(f"No such {what}: {ident}", "invalid_request_error"), status=404)
