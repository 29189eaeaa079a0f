"""Structured output: ask for JSON that matches a pydantic model, validate it, and repair what can be repaired.

Order of rescue: strict parse; then the JSON found inside prose or a ```json fence; then `json_repair` (unquoted keys,
trailing commas, a cut-off tail). If all fail, the caller re-asks once with the validation error, then records a
failure with the raw text. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import json_repair
from pydantic import BaseModel, ValidationError

FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


class ParseError(ValueError):
    """The text could not be turned into a valid instance of the schema."""


def response_format(schema: type[BaseModel], mode: Literal["json_schema", "json_object", "none"]) -> dict | None:
    """The `response_format` request field for an endpoint's structured-output support."""
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema(), "strict": False},
        }
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def _candidates(text: str) -> list[str]:
    """Likely JSON substrings: fenced blocks, then the span from the first bracket to the last matching one."""
    found = [m.group(1).strip() for m in FENCE.finditer(text)]
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = text.find(opener), text.rfind(closer)
        if 0 <= start < end:
            found.append(text[start : end + 1])
    return found


def _validate(schema: type[BaseModel], data: Any) -> BaseModel:
    if isinstance(data, list) and "items" in schema.model_fields:
        data = {"items": data}  # a bare array where the schema wraps it in {"items": [...]}
    return schema.model_validate(data)


def parse(text: str, schema: type[BaseModel]) -> tuple[BaseModel, bool]:
    """Return (instance, repaired). Raises ParseError with the last validation problem."""
    try:
        return schema.model_validate_json(text), False
    except ValidationError as exc:
        last_error = _short(exc)
    for candidate in _candidates(text):
        try:
            return _validate(schema, json.loads(candidate)), True
        except (ValueError, ValidationError) as exc:
            last_error = _short(exc)
    try:
        repaired = json_repair.loads(text)
        if repaired not in ("", None, {}, []) or not schema.model_fields:
            return _validate(schema, repaired), True
    except (ValueError, ValidationError) as exc:
        last_error = _short(exc)
    raise ParseError(last_error)


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "<root>"
        return f"schema mismatch at {loc}: {first['msg']}"
    return f"not JSON: {exc}"[:200]


def reask_messages(messages: list[dict[str, str]], raw: str, error: str) -> list[dict[str, str]]:
    """The one follow-up turn that shows the model its invalid reply and the problem."""
    return [
        *messages,
        {"role": "assistant", "content": raw[:4000]},
        {
            "role": "user",
            "content": f"That reply was invalid ({error}). Reply again with only the JSON object "
            "that matches the schema, keeping every string short.",
        },
    ]
