"""Output budgets on this run's endpoint: the length retry a remote endpoint gets and the embedded model does not.

The budgets themselves are settings with a default per endpoint profile (`settings.stages.ENDPOINT_DEFAULTS`),
filled in once when the settings are built. On a remote endpoint a reply cut at its budget gets one retry with twice
the budget, capped by the section's `length_retry_max_tokens`, before it is recorded as a failure. The embedded
model gets no such retry: a 135M model that hits its budget is almost always looping, and more tokens only cost CPU
time.
"""

from __future__ import annotations

from typing import Any

from glan_utils.settings import Settings


def budget(settings: Settings, section: Any) -> dict[str, int]:
    """`max_tokens` and the length-retry cap for one stage's calls on this run's endpoint (no retry if embedded)."""
    tokens = section.max_tokens
    retry = max(tokens, section.length_retry_max_tokens) if settings.endpoint == "remote" else tokens
    return {"max_tokens": tokens, "length_retry_max_tokens": retry}
