"""Deterministic fake JSON that validates against a JSON schema, for the fake OpenAI server.

The same (schema, seed) always gives the same value, and different seeds give different strings, so a
pipeline under test sees varied but reproducible structured output (dedup must not collapse it to one record).
Covers the JSON Schema that pydantic v2 emits: objects, arrays, tuples, scalars with bounds, enum/const,
`$ref` + `$defs`, `anyOf`/`oneOf`/`allOf`, nullable types. `pattern` and most `format`s are not honoured.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

WORDS = ("alpha", "beta", "gamma", "delta", "kappa", "sigma", "omega", "amber", "cobalt", "jade", "teal")
# Beyond this depth, recursive schemas take their smallest branch (empty arrays, null, omitted fields).
MAX_DEPTH = 6
NULL_RATE = 0.2  # how often an optional (nullable) value comes out as null
_STRING_FORMATS = {
    "date-time": lambda rng: f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T12:00:00Z",
    "date": lambda rng: f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
    "email": lambda rng: f"{rng.choice(WORDS)}{rng.randint(1, 999)}@example.com",
    "uri": lambda rng: f"https://example.com/{rng.choice(WORDS)}/{rng.randint(1, 999)}",
    "uuid": lambda rng: f"{rng.getrandbits(32):08x}-0000-4000-8000-{rng.getrandbits(48):012x}",
}


def seeded_rng(seed: Any) -> random.Random:
    """A `random.Random` seeded from the SHA-256 of `str(seed)`: stable across runs and Python processes."""
    digest = hashlib.sha256(str(seed).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def fake_json(schema: dict[str, Any], seed: Any = 0) -> Any:
    """Return a value that validates against `schema`; the same `seed` always yields the same value."""
    return _Generator(schema, seeded_rng(seed)).value(schema, hint="value", depth=0)


def fake_text(rng: random.Random, hint: str = "value", min_length: int = 0, max_length: int | None = None) -> str:
    """A short varied phrase such as "Gamma topic 3f9a"; a tight `maxLength` keeps the hex tag first."""
    noun = hint.replace("_", " ").strip() or "value"
    word, tag = rng.choice(WORDS).capitalize(), f"{rng.getrandbits(16):04x}"
    text = f"{word} {noun} {tag}"
    while len(text) < min_length:
        text += f" {rng.choice(WORDS)}"
    if max_length is not None and len(text) > max_length:
        fits = [t for t in (f"{word} {tag}", tag) if min_length <= len(t) <= max_length]
        text = fits[0] if fits else text[:max_length]
    return text


def wrong_json(schema: dict[str, Any]) -> Any:
    """A JSON value that does NOT validate against `schema` (for the `wrong_schema` fault)."""
    is_object = schema.get("type") == "object" or "properties" in schema
    return {} if not is_object or schema.get("required") else []


class _Generator:
    """Walks one schema with one random stream; `$ref`s resolve against the root's `$defs`/`definitions`."""

    def __init__(self, root: dict[str, Any], rng: random.Random) -> None:
        self.root = root
        self.rng = rng

    def value(self, schema: dict[str, Any], hint: str, depth: int) -> Any:
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.rng.choice(schema["enum"])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.value(self._pick_branch(schema[key], depth), hint, depth)
        if "allOf" in schema:
            return self.value(self._merge(schema["allOf"]), hint, depth)
        kind = self._type_of(schema, depth)
        maker = getattr(self, f"_make_{kind}")
        return maker(schema, hint, depth)

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"fake_json only resolves local $ref values, got {ref!r}")
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target[part]
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return schema

    def _pick_branch(self, branches: list[dict[str, Any]], depth: int) -> dict[str, Any]:
        non_null = [b for b in branches if self._resolve(b).get("type") != "null"]
        if self._takes_null(non_null, len(non_null) < len(branches), depth):
            return {"type": "null"}
        return self.rng.choice(non_null)

    def _takes_null(self, non_null: list[Any], nullable: bool, depth: int) -> bool:
        return not non_null or (nullable and (depth >= MAX_DEPTH or self.rng.random() < NULL_RATE))

    def _merge(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for part in map(self._resolve, parts):
            props = {**merged.get("properties", {}), **part.get("properties", {})}
            required = [*merged.get("required", []), *part.get("required", [])]
            merged.update(part)
            if props:
                merged["properties"], merged["required"] = props, required
        return merged

    def _type_of(self, schema: dict[str, Any], depth: int) -> str:
        kind = schema.get("type")
        options = kind if isinstance(kind, list) else [kind]
        non_null = [k for k in options if k != "null"]
        if self._takes_null(non_null, schema.get("nullable") or len(non_null) < len(options), depth):
            return "null"
        if non_null[0] is not None:
            return non_null[0]
        return "object" if "properties" in schema else "array" if "items" in schema else "string"

    def _make_object(self, schema: dict[str, Any], hint: str, depth: int) -> dict[str, Any]:
        required = set(schema.get("required", []))
        props = schema.get("properties", {})
        out = {
            name: self.value(sub, name, depth + 1)
            for name, sub in props.items()
            if name in required or depth < MAX_DEPTH
        }
        extra = schema.get("additionalProperties")
        if not props and isinstance(extra, dict) and depth < MAX_DEPTH:
            out[f"{hint}_{self.rng.getrandbits(12):03x}"] = self.value(extra, hint, depth + 1)
        return out

    def _make_array(self, schema: dict[str, Any], hint: str, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems", [])
        low = max(schema.get("minItems", 0), len(prefix))
        high = schema.get("maxItems", max(low, len(prefix)) + 3)
        count = low if depth >= MAX_DEPTH else self.rng.randint(low, max(low, min(high, low + 3)))
        items = schema.get("items", {})
        singular = hint[:-1] if hint.endswith("s") and len(hint) > 3 else hint
        return [
            self.value(
                prefix[i] if i < len(prefix) else items if isinstance(items, dict) else {},
                singular,
                depth + 1,
            )
            for i in range(count)
        ]

    def _make_string(self, schema: dict[str, Any], hint: str, depth: int) -> str:
        fmt = _STRING_FORMATS.get(schema.get("format", ""))
        if fmt is not None:
            return fmt(self.rng)
        return fake_text(self.rng, hint, schema.get("minLength", 0), schema.get("maxLength"))

    def _make_integer(self, schema: dict[str, Any], hint: str, depth: int) -> int:
        low, high = self._bounds(schema, step=1)
        return self.rng.randint(int(-(-low // 1)), int(high // 1))

    def _make_number(self, schema: dict[str, Any], hint: str, depth: int) -> float:
        low, high = self._bounds(schema, step=1e-6)
        return min(high, max(low, round(self.rng.uniform(low, high), 3)))

    def _make_boolean(self, schema: dict[str, Any], hint: str, depth: int) -> bool:
        return self.rng.random() < 0.5

    def _make_null(self, schema: dict[str, Any], hint: str, depth: int) -> None:
        return None

    @staticmethod
    def _bounds(schema: dict[str, Any], step: float) -> tuple[float, float]:
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        low = (low + step if "minimum" not in schema else low) if low is not None else None
        high = (high - step if "maximum" not in schema else high) if high is not None else None
        if low is None:
            low = min(0, high - 100) if high is not None else 0
        if high is None:
            high = low + 100
        return low, high
