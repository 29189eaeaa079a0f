"""Versioned prompt templates: Jinja files under `prompts/`, each rendered to chat messages plus its hash.

A template holds a `system` and a `user` block. The hash of the template source goes into every record's provenance
and into the cache key, so editing a prompt invalidates exactly the work it shaped. Values are inserted as data: the
templates quote user-supplied names (`| tojson`), so a hostile discipline name cannot pose as an instruction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from glan_utils.core.errors import SetupError

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"


@dataclass(frozen=True)
class RenderedPrompt:
    """Chat messages made from a template, with the template's name and hash for provenance."""

    name: str
    hash: str
    messages: list[dict[str, str]]


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(PROMPTS_DIR),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
    )
    # `tojson` quotes data; keep non-English text readable to the model ("Übung", not "\u00dcbung").
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False}
    return env


@lru_cache(maxsize=64)
def template_hash(name: str) -> str:
    """Short sha256 of the template file's bytes: the prompt's version."""
    path = PROMPTS_DIR / f"{name}.jinja"
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except FileNotFoundError:
        raise SetupError(f"prompt template not found: {path}") from None


def render(name: str, **variables: Any) -> RenderedPrompt:
    """Render `prompts/<name>.jinja`'s `system` and `user` blocks into chat messages."""
    digest = template_hash(name)
    template = _environment().get_template(f"{name}.jinja")
    context = template.new_context(variables)
    messages = []
    for role in ("system", "user"):
        block = template.blocks.get(role)
        if block is not None:
            text = "".join(block(context)).strip()
            if text:
                messages.append({"role": role, "content": text})
    return RenderedPrompt(name=name, hash=digest, messages=messages)
