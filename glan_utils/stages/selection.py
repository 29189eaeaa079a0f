"""What each stage works on: the taxonomy as kept by review, and the records under the kept disciplines.

A review can change after later stages ran, so every stage re-selects its inputs here instead of trusting
files: work under a removed discipline is simply not planned any more (its records stay on disk, untouched).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from glan_utils.core.records import Record, TaxonomyNode
from glan_utils.runs.store import RunStore
from glan_utils.settings import Settings
from glan_utils.stages.review import Review, apply_review, disciplines, load_reviews, merge, reviews_dir

R = TypeVar("R", bound=Record)


def review_path(settings: Settings) -> Path | None:
    """The review to apply: `taxonomy.review_file`, else the run's `reviews/` folder if a review was saved."""
    if settings.taxonomy.review_file:
        return Path(settings.taxonomy.review_file)
    folder = reviews_dir(settings.run_dir)
    return folder if folder.is_dir() and any(folder.glob("*.json")) else None


def current_review(settings: Settings) -> Review | None:
    path = review_path(settings)
    return merge(load_reviews(path)) if path else None


def kept_taxonomy(settings: Settings) -> list[TaxonomyNode]:
    """The taxonomy after review (all nodes accepted when there is none)."""
    nodes = RunStore(settings.run_dir).iter_records(TaxonomyNode.stage_name)
    return apply_review(nodes, current_review(settings))


def kept_disciplines(settings: Settings) -> list[TaxonomyNode]:
    return disciplines(kept_taxonomy(settings))


def kept_records(settings: Settings, stage: str) -> Iterator[Any]:
    """Stream a stage's records that still belong to a kept discipline (a later review may drop some)."""
    kept_ids = {d.id for d in kept_disciplines(settings)}
    return (r for r in RunStore(settings.run_dir).iter_records(stage) if r.discipline_id in kept_ids)


def count_kept(settings: Settings, stage: str) -> int:
    return sum(1 for _ in kept_records(settings, stage))


def first_record(settings: Settings, record: type[R]) -> R | None:
    """The run's first record of a type, for prompt previews; None before its stage ran."""
    return next(iter(RunStore(settings.run_dir).iter_records(record.stage_name, record)), None)
