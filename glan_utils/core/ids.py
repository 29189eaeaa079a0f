"""Stable content hashes: the same content always gets the same id, so reruns find their earlier work."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """Serialise `value` deterministically (sorted keys, no whitespace) for hashing."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(*parts: Any, length: int = 16) -> str:
    """Hex digest of the canonical JSON of `parts`; 16 hex chars keep ids short yet collision-safe at 10M records."""
    digest = hashlib.sha256(canonical_json(parts).encode("utf-8")).hexdigest()
    return digest[:length]
