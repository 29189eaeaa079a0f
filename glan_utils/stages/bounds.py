"""What depends on the endpoint: output budgets and the homework question types.

The tight bounds of the embedded SmolLM2-135M (short budgets, a short type list) stop a small model's loops; a
strong remote model (GPT-4o class, a 70B on vLLM) writes 2,000-character questions and long worked answers, which
those bounds would cut and bias the data toward short, easy items. So each stage section carries both, and the
endpoint decides. On a remote endpoint a reply cut at its budget gets one retry with twice the budget, capped by
the section's `length_retry_max_tokens`, before it is recorded as a failure. The embedded model gets no such
retry: a 135M model that hits its budget is almost always looping, and more tokens only cost CPU time.
"""

from __future__ import annotations

from typing import Any

from glan_utils.settings import Settings


def remote(settings: Settings) -> bool:
    """True when calls go to a configured endpoint, False for the embedded llama.cpp model."""
    return settings.llm.base_url is not None or bool(settings.llm.base_urls)


def budget(settings: Settings, section: Any) -> dict[str, int]:
    """`max_tokens` and the length-retry cap for one stage's calls on this run's endpoint (no retry if embedded)."""
    if not remote(settings):
        return {"max_tokens": section.max_tokens, "length_retry_max_tokens": section.max_tokens}
    tokens = section.remote_max_tokens
    return {"max_tokens": tokens, "length_retry_max_tokens": max(tokens, section.length_retry_max_tokens)}


def question_types(settings: Settings) -> list[str]:
    """The question types drawn from: the full list for remote endpoints, the simple one for the embedded model."""
    cfg = settings.questions
    return list(cfg.question_types if remote(settings) else cfg.embedded_question_types) or ["problem"]


def question_chars(settings: Settings) -> int:
    """The longest question kept on this endpoint."""
    cfg = settings.questions
    return cfg.remote_max_chars if remote(settings) else cfg.max_chars
