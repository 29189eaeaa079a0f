"""What every generation stage shares: one guarded LLM call, bounded reply lists, and provenance.

Reply schemas bound every string and list (`maxLength`, `maxItems`) because a small local model at high
temperature otherwise loops until `max_tokens` and cuts the JSON. A call that does not yield a valid reply
becomes a `Failure` carrying the reason and the raw text, so nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Field, create_model

from glan_utils.core.records import Failure, Provenance
from glan_utils.llm.client import ChatResult, LLMClient
from glan_utils.llm.prompts import RenderedPrompt

NAME_MAX = 80
TEXT_MAX = 300
R = TypeVar("R")
ShortText = Annotated[str, Field(min_length=1, max_length=NAME_MAX)]


@lru_cache(maxsize=64)
def bounded_list(item: type[BaseModel], low: int, high: int) -> type[BaseModel]:
    """A reply schema `{"items": [item, ...]}` with low..high items; the bounds land in the JSON schema."""
    return create_model(f"{item.__name__}List", items=(list[item], Field(min_length=low, max_length=max(low, high))))  # type: ignore[valid-type]


@dataclass
class Tally:
    """Counts a stage keeps besides records and failures: outputs rescued by repair, cache hits."""

    repaired: int = 0
    cached: int = 0

    def note(self, result: ChatResult) -> None:
        self.repaired += int(result.repaired)
        self.cached += int(result.cached)


@dataclass(frozen=True)
class Reply:
    """A reply with its call: records made from it name their provenance; a rejected one is a Failure."""

    result: ChatResult
    prompt: RenderedPrompt
    stage: str
    task_id: str

    @property
    def parsed(self) -> Any:
        return self.result.parsed

    @property
    def text(self) -> str:
        return self.result.text or ""

    def provenance(self, parent_ids: list[str]) -> Provenance:
        """Which template, model and sampling made a record, and the cache key of the call."""
        return Provenance(
            prompt=self.prompt.name,
            prompt_hash=self.prompt.hash,
            model=str(self.result.params.get("model", "")),
            params=self.result.params,
            cache_key=self.result.cache_key,
            parent_ids=parent_ids,
        )

    def failure(self, reason: str) -> Failure:
        """The reply kept as a Failure of this task, with its raw text."""
        return Failure(stage=self.stage, task_id=self.task_id, reason=reason, raw=self.result.text)


@dataclass
class Caller:
    """How every stage calls the model: one client, the stage its failures are filed under, and its tally."""

    client: LLMClient
    stage: str
    tally: Tally = field(default_factory=Tally)

    async def generate(
        self,
        task_id: str,
        prompt: RenderedPrompt,
        build: Callable[[Reply], list[R] | Failure],
        *,
        schema: type[BaseModel] | None = None,
        **sampling: Any,
    ) -> list[R] | Failure:
        """One call; a failed or invalid reply becomes a Failure with its reason and raw output, a valid one
        goes to `build`, which makes the stage's records from it."""
        result = await self.client.chat(prompt=prompt, schema=schema, **sampling)
        self.tally.note(result)
        reply = Reply(result, prompt, self.stage, task_id)
        if not result.ok:
            return reply.failure(result.error or "unknown error")
        return build(reply)
