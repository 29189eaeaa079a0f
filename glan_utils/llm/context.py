"""Context windows: what a model takes, a conservative count of a prompt's tokens, and long inputs fitted to a budget.

A prompt that cannot fit is known before it is sent: the client fails it locally (no paid call) when its estimate
exceeds the model's window, and the judges trim the long texts they are shown (answers, references) to what the
window leaves, saying which. Tokens are estimated from UTF-8 bytes, 3 a token: English runs near 4 characters a
token, code and LaTeX near 3, CJK text 3 bytes a character and about a token each, so the estimate over-counts
nearly always and a prompt fitted to it fits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from glan_utils.llm.prompts import RenderedPrompt, render

BYTES_PER_TOKEN = 3.0
MESSAGE_TOKENS = 8  # a chat template's role markers around each message
TRIM_MARK = "\n[... {n} characters trimmed to fit the context window ...]\n"
# Context windows (prompt + reply tokens) of common models; a served name extending an entry with `-` or `:`
# (a dated snapshot, a size or quantisation tag) takes its window. `llm.context_windows` adds and overrides.
KNOWN_WINDOWS: dict[str, int] = {
    "gpt-3.5-turbo": 16_385,
    "gpt-4": 8_192,
    "gpt-4-turbo": 128_000,
    "gpt-4o": 128_000,
    "gpt-4o-mini": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-4.1-mini": 1_047_576,
    "gpt-4.1-nano": 1_047_576,
    "gpt-5": 400_000,
    "gpt-5-mini": 400_000,
    "gpt-5-nano": 400_000,
    "o1": 200_000,
    "o3": 200_000,
    "o3-mini": 200_000,
    "o4-mini": 200_000,
    "claude-3-5-sonnet": 200_000,
    "claude-3-5-haiku": 200_000,
    "claude-3-7-sonnet": 200_000,
    "meta-llama/llama-3.1": 131_072,
    "meta-llama/llama-3.3": 131_072,
    "mistralai/mistral-7b-instruct": 32_768,
    "qwen/qwen2.5": 32_768,
    "llama3.1": 131_072,
    "qwen2.5": 32_768,
}


def approx_tokens(text: str) -> int:
    """Tokens of `text`, over-counted (see the module docstring)."""
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Tokens of a chat prompt, over-counted: its messages' text and each message's template markers."""
    return sum(approx_tokens(str(m.get("content") or "")) + MESSAGE_TOKENS for m in messages)


def context_window(model: str, windows: Mapping[str, int]) -> int | None:
    """The model's window from `windows` (the setting) or the known table; None when neither knows the model."""
    table = {name.lower(): size for name, size in {**KNOWN_WINDOWS, **windows}.items()}
    name = model.lower()
    if name in table:
        return table[name]
    stems = [stem for stem in table if name.startswith((f"{stem}-", f"{stem}:"))]
    return table[max(stems, key=len)] if stems else None


def trim(text: str, tokens: int) -> str:
    """`text` cut to about `tokens` (estimated): its head and its end (where a final answer is) kept, the middle
    replaced by a mark saying how much was cut."""
    raw = text.encode("utf-8")
    if len(raw) <= tokens * BYTES_PER_TOKEN:
        return text
    keep = max(0, int(tokens * BYTES_PER_TOKEN) - len(TRIM_MARK) - 8)  # bytes, room left for the mark
    head = keep * 2 // 3
    kept_head = raw[:head].decode("utf-8", "ignore")
    kept_tail = raw[len(raw) - (keep - head) :].decode("utf-8", "ignore") if keep > head else ""
    cut = len(text) - len(kept_head) - len(kept_tail)
    return kept_head + TRIM_MARK.format(n=cut) + kept_tail


def _shares(sizes: dict[str, int], budget: int) -> dict[str, int]:
    """Split `budget` tokens over texts of `sizes` tokens: short texts keep all they need, long ones share the
    rest equally (water filling)."""
    shares, left = {}, max(budget, 0)
    ordered = sorted(sizes, key=sizes.__getitem__)
    for i, name in enumerate(ordered):
        shares[name] = min(sizes[name], left // (len(ordered) - i))
        left -= shares[name]
    return shares


def render_fitted(
    name: str, window: int | None, reply_tokens: int, long: dict[str, str], **variables: Any
) -> tuple[RenderedPrompt, list[str]]:
    """Render template `name`; when the prompt and `reply_tokens` would not fit `window`, trim the `long` texts
    (shortest kept whole first) so they do. Returns the prompt and the names of the texts that were trimmed."""
    prompt = render(name, **long, **variables)
    if window is None or prompt_tokens(prompt.messages) + reply_tokens <= window:
        return prompt, []
    frame = prompt_tokens(render(name, **dict.fromkeys(long, ""), **variables).messages)
    shares = _shares({k: approx_tokens(v) for k, v in long.items()}, window - reply_tokens - frame)
    fitted = {k: trim(v, shares[k]) for k, v in long.items()}
    return render(name, **fitted, **variables), [k for k in long if fitted[k] != long[k]]
