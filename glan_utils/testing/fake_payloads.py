"""OpenAI-shaped response bodies for the fake server: chat completions, completions with logprobs, errors.

Everything a response says is derived from a hash of the request body, so the same request always gets the
same content (reproducible across runs) while different prompts get different content. Tokens are words.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from glan_utils.core.ids import content_hash
from glan_utils.testing.fake_json import WORDS, fake_json, seeded_rng, wrong_json

Responder = Callable[[dict[str, Any]], str]


def word_count(text: str) -> int:
    """The fake tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def error_body(message: str, type_: str, code: str | int | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope: {"error": {message, type, param, code}} (llama.cpp's `code` is the HTTP status)."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message whose content is a string or a list of typed parts."""
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content if isinstance(part, dict))


def json_schema_of(body: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of a `response_format={"type": "json_schema", ...}` request, else None."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") != "json_schema":
        return None
    return (fmt.get("json_schema") or {}).get("schema", {})


def default_content(body: dict[str, Any], choice: int = 0) -> str:
    """Content for an `ok` reply: schema-valid JSON, a small JSON object, or text echoing the user's turn."""
    seed = content_hash(body, choice)
    schema = json_schema_of(body)
    if schema is not None:
        return json.dumps(fake_json(schema, seed))
    rng = seeded_rng(seed)
    if (body.get("response_format") or {}).get("type") == "json_object":
        return json.dumps(
            {"answer": f"{rng.choice(WORDS).capitalize()} answer {seed[:4]}", "score": rng.randint(1, 10)}
        )
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    summary = " ".join(message_text(users[-1]).split()[:12]) if users else "nothing"
    return f"Reply {seed[:4]} ({rng.choice(WORDS)}) to: {summary}"


def chat_content(body: dict[str, Any], kind: str, choice: int, content: str | None, responder: Responder | None) -> str:
    """The assistant content that a content-bearing behaviour `kind` produces for this request."""
    if content is not None:
        return content
    if kind == "wrong_schema":
        return json.dumps(wrong_json(json_schema_of(body) or {"type": "object", "required": ["x"]}))
    text = responder(body) if responder is not None else default_content(body, choice)
    if kind == "prose":
        return f"Sure! Here is the JSON you asked for:\n```json\n{text}\n```\nAnything else?"
    if kind == "truncated":
        return text[: max(1, len(text) // 2)]
    return text


def until_stop(text: str, body: dict[str, Any]) -> str:
    """The text up to the first of the request's `stop` sequences, as a real server cuts its generation."""
    stops = body.get("stop") or []
    for stop in [stops] if isinstance(stops, str) else stops:
        if stop:
            text = text.split(stop)[0]
    return text


def chat_completion(body: dict[str, Any], contents: list[str], finish_reason: str = "stop") -> dict[str, Any]:
    """A `chat.completion` object with one choice per content string."""
    prompt_tokens = sum(word_count(message_text(m)) for m in body.get("messages", []))
    completion_tokens = sum(word_count(c) for c in contents)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            for i, text in enumerate(contents)
        ],
        "usage": _usage(prompt_tokens, completion_tokens),
    }


def completion(
    body: dict[str, Any],
    decode: Callable[[list[int]], str] | None = None,
    content: str | None = None,
    sure_of: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """A `text_completion` object; honours echo, max_tokens (words), logprobs (top-N per token) and, for a scripted
    `content`, the stop sequences. Words in `sure_of` get log-probability -0.01 (an oracle for log-likelihood
    scoring: the fake model is sure of them).

    Token-id prompts are turned back into text with `decode` (the server's word tokenizer).
    """
    prompts = _prompts(body.get("prompt", ""), decode or (lambda ids: " ".join(map(str, ids))))
    max_tokens = body.get("max_tokens", 16)
    choices = [_completion_choice(i, p, body, max_tokens, sure_of) for i, p in enumerate(prompts)]
    if content is not None:
        for choice in choices:
            choice["text"], choice["finish_reason"] = until_stop(content, body), "stop"
    generated = sum(c.pop("_generated") for c in choices)
    return {
        "id": f"cmpl-{uuid.uuid4().hex[:24]}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": choices,
        "usage": _usage(sum(word_count(p) for p in prompts), generated),
    }


def token_logprob(previous: str, token: str) -> float:
    """A reproducible log-probability in [-8.05, -0.05] for `token` following `previous`."""
    digest = hashlib.sha256(f"{previous}\0{token}".encode()).digest()
    return -round(0.05 + 8 * int.from_bytes(digest[:4], "big") / 2**32, 4)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _prompts(prompt: Any, decode: Callable[[list[int]], str]) -> list[str]:
    """Normalise str | list[str] | list[int] | list[list[int]] to a list of prompt strings."""
    if isinstance(prompt, str):
        return [prompt]
    if prompt and all(isinstance(t, int) for t in prompt):
        return [decode(prompt)]
    return [p if isinstance(p, str) else decode(p) for p in prompt]


def _completion_choice(
    index: int, prompt: str, body: dict[str, Any], max_tokens: int, sure_of: frozenset[str]
) -> dict[str, Any]:
    rng = seeded_rng(content_hash(prompt, body.get("model")))
    words = [rng.choice(WORDS) for _ in range(min(max_tokens, 8))]
    generated = "".join(f" {w}" for w in words)
    text = (prompt if body.get("echo") else "") + generated
    logprobs = None
    if body.get("logprobs") is not None:
        logprobs = _logprobs(text, int(body["logprobs"]), bool(body.get("echo")), sure_of)
    return {
        "index": index,
        "text": text,
        "logprobs": logprobs,
        "finish_reason": "length" if len(words) >= max_tokens else "stop",
        "_generated": len(words),
    }


def _logprobs(text: str, top_n: int, skip_first: bool, sure_of: frozenset[str]) -> dict[str, list[Any]]:
    """Per-word logprobs in OpenAI's legacy shape; like OpenAI, an echoed first token has no logprob."""
    matches = list(re.finditer(r"\S+", text))
    tokens = [m.group() for m in matches]
    token_logprobs: list[float | None] = []
    top_logprobs: list[dict[str, float] | None] = []
    for i, token in enumerate(tokens):
        if i == 0 and skip_first:
            token_logprobs.append(None)
            top_logprobs.append(None)
            continue
        previous = tokens[i - 1] if i else ""
        alternatives = {w: token_logprob(previous, w) for w in WORDS[: max(0, top_n - 1)] if w != token}
        token_logprobs.append(-0.01 if token in sure_of else token_logprob(previous, token))
        top_logprobs.append({token: token_logprobs[-1], **alternatives} if top_n > 0 else {})
    return {
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": [m.start() for m in matches],
    }
