"""What evaluation could not score, and why: a benchmark or GLAN-Test that fails is reported with its reason instead
of raising, so the notebook's later cells, the next notebook and the report still run on what was measured."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import pandas as pd

T = TypeVar("T")


@dataclass(frozen=True)
class NotScored:
    """One model x benchmark (or GLAN-Test) that produced no score, with the error that stopped it, in one line."""

    model: str
    benchmark: str
    reason: str

    @classmethod
    def of(cls, model: str, benchmark: str, exc: BaseException) -> NotScored:
        return cls(model, benchmark, " ".join(f"{type(exc).__name__}: {exc}".split())[:300])


def attempt(
    model: str, benchmark: str, unscored: list[NotScored], fn: Callable[..., T], *args: Any, **kwargs: Any
) -> T | None:
    """`fn(*args, **kwargs)`, or None with a NotScored appended to `unscored` when it raises."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # any failure of one evaluation is reported, never the end of the notebook
        unscored.append(NotScored.of(model, benchmark, exc))
        return None


def unscored_frame(unscored: list[NotScored]) -> pd.DataFrame:
    """What was not scored, one row each (model, benchmark, reason); empty when everything was."""
    return pd.DataFrame([asdict(item) for item in unscored], columns=["model", "benchmark", "reason"])
