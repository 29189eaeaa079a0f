"""Paper mode (§2.2-2.3): the model writes free text first, then a second call extracts its structure as JSON.

GLAN's prompts ask for prose; the default `schema` mode asks for JSON in one call, which is cheaper and what
structured-output endpoints do well, but constrains how a model writes. `structure: paper` restores the paper's
two steps. The draft is an ordinary cached call; the extraction is deterministic (T=0) and validated like any
structured reply, so a failure of either is a Failure with the raw text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from glan_utils.core.records import Failure
from glan_utils.llm.prompts import RenderedPrompt, render
from glan_utils.stages.base import Caller, Reply

R = TypeVar("R")


def extraction_prompt(text: str, what: str, shape: dict[str, Any]) -> RenderedPrompt:
    """The second call's prompt: the draft as data, and the JSON shape to copy it into."""
    return render("extract", text=text, what=what, shape=json.dumps(shape, ensure_ascii=False))


async def generate(
    caller: Caller,
    structure: str,
    task_id: str,
    prompt: Callable[[bool], RenderedPrompt],
    build: Callable[[Reply], list[R] | Failure],
    *,
    schema: type[BaseModel],
    what: str,
    shape: dict[str, Any],
    **sampling: Any,
) -> list[R] | Failure:
    """One schema call, or (paper mode) a free-text draft then an extraction; `prompt(paper)` renders the first."""
    if structure != "paper":
        return await caller.generate(task_id, prompt(False), build, schema=schema, **sampling)
    draft_prompt = prompt(True)
    draft = await caller.client.chat(prompt=draft_prompt, **sampling)
    caller.tally.note(draft)
    if not draft.ok:
        return Reply(draft, draft_prompt, caller.stage, task_id).failure(draft.error or "unknown error")
    retry = {k: v for k, v in sampling.items() if k in ("max_tokens", "length_retry_max_tokens", "model")}
    return await caller.generate(
        task_id,
        extraction_prompt(draft.text or "", what, shape),
        build,
        schema=schema,
        temperature=0.0,
        sample_index=sampling.get("sample_index", 0),
        **retry,
    )
