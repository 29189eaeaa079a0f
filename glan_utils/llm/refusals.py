"""Refusals: a 4xx about one request is a failure of that item; the same refusal of every call is a setup error.

OpenAI, Azure and vLLM answer 400 for single requests (`context_length_exceeded`, a filtered or invalid prompt)
while the rest of a stage is fine, so a refusal is recorded as the item's failure, with the server's status, code
and message, and the stage goes on. A setup error (unknown model, no access, a parameter the endpoint rejects)
refuses every call the same way: `RefusalGuard` watches a stage's first answered calls and, when enough of them are
refused identically (same status, code and message), stops the stage with the server's reason. Until it has
decided, at most `llm.refusal_check_calls` calls of the stage are in flight, so a setup error costs that many
calls, not one per task. A 401 (bad key) is never about one request: it stops at once.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import TypeGuard

from glan_utils.core.errors import SetupError
from glan_utils.llm.endpoints import EndpointStatusError

REFUSED = "refused ("  # how every refusal's failure reason begins
RETRYABLE_STATUS = frozenset({408, 409, 429})  # timeouts, conflicts and rate limits: a retry may pass
ALWAYS_FATAL = {401: "authentication failed (check the API key variable)"}


def is_refusal(exc: BaseException) -> TypeGuard[EndpointStatusError]:
    """A 4xx a retry cannot fix: the endpoint refused this request (or, if it refuses every one, the setup)."""
    return isinstance(exc, EndpointStatusError) and 400 <= exc.status < 500 and exc.status not in RETRYABLE_STATUS


class Refused(Exception):
    """The endpoint refused one request: its HTTP status, error code and message (never cached, never retried)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, code, message)
        self.status, self.code, self.message = status, code, message

    @classmethod
    def of(cls, exc: EndpointStatusError, secret: str | None = None) -> Refused:
        """The refusal in an HTTP error, its message on one line with the API key (if echoed) masked."""
        message = exc.message.replace(secret, "***") if secret else exc.message
        return cls(exc.status, exc.code, " ".join(message.split())[:200])

    @property
    def kind(self) -> str:
        """What failures are counted by: `HTTP 400 context_length_exceeded`."""
        return f"HTTP {self.status}{' ' + self.code if self.code else ''}"

    def __str__(self) -> str:
        """The failure reason: `refused (HTTP 400 context_length_exceeded): <the server's message>`."""
        return f"{REFUSED}{self.kind}): {self.message}"


class RefusalGuard:
    """Stops a stage whose first calls are all refused the same way; see the module docstring.

    `calls` answered calls decide (refused or not; transient errors do not count); the stage stops when one
    identical refusal makes up at least `share` of them. Create it inside the event loop that uses it.
    """

    def __init__(self, calls: int, share: float, where: str) -> None:
        self.calls, self.where = calls, where
        self.needed = max(1, math.ceil(share * calls))
        self.answered = 0
        self.accepted = 0
        self.refusals: Counter[tuple[int, str, str]] = Counter()
        self.tripped: SetupError | None = None
        self._probing = 0
        self._changed = asyncio.Condition()

    @property
    def decided(self) -> bool:
        """Tripped, or no refusal can trip it any more (enough calls answered, or too many accepted)."""
        return self.tripped is not None or self.answered >= self.calls or self.accepted > self.calls - self.needed

    async def enter(self) -> bool:
        """Wait for a probe slot while undecided; True when one was taken (hand it to `leave`)."""
        if self.tripped is not None:
            raise self.tripped
        if self.decided:
            return False
        async with self._changed:
            await self._changed.wait_for(lambda: self.decided or self._probing < self.calls)
            if self.tripped is not None:
                raise self.tripped
            if self.decided:
                return False
            self._probing += 1
            return True

    async def leave(self, probing: bool, outcome: BaseException | None) -> None:
        """Count a finished attempt (`outcome` None = accepted) and raise the stage's stop if it trips."""
        if isinstance(outcome, SetupError) and self.tripped is None:  # a bad key: calls waiting here are not sent
            self.tripped = outcome
        counted = False
        if self.tripped is None and not self.decided:
            if outcome is None:
                self.accepted += 1
                self.answered += 1
                counted = True
            elif isinstance(outcome, Refused):
                counted = True
                self.answered += 1
                same = self.refusals[outcome.args] = self.refusals[outcome.args] + 1
                if same >= self.needed:
                    self.tripped = SetupError(
                        f"{self.where}: {same} of the first {self.answered} calls were refused "
                        f"the same way, so the stage stops (llm.refusal_check_calls): {outcome}"
                    )
        if probing or self.decided:
            async with self._changed:  # an answered call keeps its slot: at most `calls` are sent until decided
                self._probing -= int(probing and not counted)
                self._changed.notify_all()
        if self.tripped is not None and isinstance(outcome, Refused):
            raise self.tripped
