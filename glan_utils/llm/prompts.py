"""Versioned prompt templates: Jinja files in the top-level `prompts/`, each rendered to chat messages plus its hash.

The folder sits beside `notebooks/` where researchers look for it; a built wheel carries it as the package
`glan_utils.prompts` (pyproject's `package-dir`), so a non-editable install renders the same templates.

A template holds a `system` and a `user` block. The hash of the template source goes into every record's provenance
and into the cache key, so editing a prompt invalidates exactly the work it shaped.

Values reach the model verbatim: `'`, `<`, `&`, `\\`, code and LaTeX are not escaped (Jinja's `tojson` would write
`\\u0027` and `\\\\frac`, and a model copies that into the data). The templates mark data instead: short names in
double quotes (`| quote`), long texts between `<<<` and `>>>` lines (`| block`), and the system turn says that marked
text is data, never instructions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from glan_utils.core.errors import SetupError

_PACKAGE = Path(__file__).resolve().parents[1]
# a wheel install holds glan_utils/prompts; a source checkout holds the top-level prompts/ beside glan_utils/
PROMPTS_DIR = _PACKAGE / "prompts" if (_PACKAGE / "prompts").is_dir() else _PACKAGE.parent / "prompts"


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
    env.filters["quote"] = quote
    env.filters["block"] = block
    env.filters["quote_list"] = quote_list
    return env


def quote(value: object) -> str:
    """A name as data: in double quotes, verbatim (no escaping, so `Newton's <Laws> & Co` arrives as written)."""
    return f'"{value}"'


def quote_list(values: list[object]) -> str:
    """Several names as data: each quoted verbatim, comma-separated."""
    return ", ".join(quote(v) for v in values)


def block(value: object) -> str:
    """A long text as data between `<<<` and `>>>` lines: verbatim, multi-line code and LaTeX intact."""
    return f"<<<\n{str(value).strip()}\n>>>"


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
