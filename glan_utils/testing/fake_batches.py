"""In-memory Files + Batch API (state and HTTP routes) for the fake OpenAI server.

A batch moves validating -> in_progress -> completed as time passes (done `delay_s` after creation).
Its input lines are answered when it completes, each through `answer(body) -> (status, response_body)`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from glan_utils.testing.fake_payloads import error_body

Answer = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


@dataclass
class StoredFile:
    """An uploaded or generated file: its OpenAI `file` object plus its bytes."""

    meta: dict[str, Any]
    data: bytes


@dataclass
class BatchStore:
    """Files and batches keyed by id; `answer` produces one response per batch line."""

    answer: Answer
    delay_s: float = 0.0
    files: dict[str, StoredFile] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    _started: dict[str, float] = field(default_factory=dict)

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
            "expires_at": now + 86400,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": request.get("metadata"),
        }
        self._started[batch_id] = time.monotonic()
        return dict(self.batches[batch_id])

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        """The batch object with its status advanced to now; raises KeyError for an unknown id."""
        batch = self.batches[batch_id]
        elapsed = time.monotonic() - self._started[batch_id]
        if batch["status"] == "validating" and elapsed >= self.delay_s / 2:
            batch.update(status="in_progress", in_progress_at=int(time.time()))
        if batch["status"] == "in_progress" and elapsed >= self.delay_s:
            self._complete(batch)
        return dict(batch)

    def _complete(self, batch: dict[str, Any]) -> None:
        lines = [json.loads(line) for line in self.files[batch["input_file_id"]].data.splitlines() if line.strip()]
        outputs = [self._output_line(line) for line in lines]
        failed = sum(out["response"]["status_code"] != 200 for out in outputs)
        data = "".join(json.dumps(out) + "\n" for out in outputs).encode()
        output = self.add_file(data, f"{batch['id']}_output.jsonl", "batch_output")
        batch.update(
            status="completed",
            completed_at=int(time.time()),
            output_file_id=output["id"],
            request_counts={"total": len(lines), "completed": len(lines) - failed, "failed": failed},
        )

    def _output_line(self, line: dict[str, Any]) -> dict[str, Any]:
        status, body = self.answer(line.get("body", {}))
        return {
            "id": f"batch_req_{uuid.uuid4().hex[:24]}",
            "custom_id": line.get("custom_id"),
            "response": {"status_code": status, "request_id": f"req_{uuid.uuid4().hex[:24]}", "body": body},
            "error": None,
        }

    def routes(self) -> list[web.RouteDef]:
        """The aiohttp routes of the Files and Batch endpoints, served from this store."""
        return [
            web.post("/v1/files", self._upload),
            web.get("/v1/files/{id}", self._file),
            web.get("/v1/files/{id}/content", self._file_content),
            web.post("/v1/batches", self._create),
            web.get("/v1/batches/{id}", self._retrieve),
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


def _not_found(what: str, ident: Any) -> web.Response:
    return web.json_response(error_body(f"No such {what}: {ident}", "invalid_request_error"), status=404)
