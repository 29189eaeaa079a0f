"""What each stage works on: the taxonomy as kept by review, and the records under the kept disciplines.

A review can change after later stages ran, so every stage re-selects its inputs here instead of trusting
files: work under a removed discipline is simply not planned any more (its records stay on disk, untouched).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from glan_utils import homework, syllabus, taxonomy
from glan_utils.config import Settings
from glan_utils.records import TaxonomyNode
from glan_utils.review import Review, apply_review, disciplines, load_reviews, merge, reviews_dir
from glan_utils.store import RunStore


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
    nodes = RunStore(settings.run_dir).iter_records(taxonomy.STAGE)
    return apply_review(nodes, current_review(settings))


def kept_disciplines(settings: Settings) -> list[TaxonomyNode]:
    return disciplines(kept_taxonomy(settings))


def kept_records(settings: Settings, stage: str) -> Iterator[Any]:
    """Stream a stage's records that still belong to a kept discipline (a later review may drop some)."""
    kept_ids = {d.id for d in kept_disciplines(settings)}
    return (r for r in RunStore(settings.run_dir).iter_records(stage) if r.discipline_id in kept_ids)


def count_kept(settings: Settings, stage: str) -> int:
    return sum(1 for _ in kept_records(settings, stage))


def question_tasks(settings: Settings) -> Iterator[homework.QuestionTask]:
    """Every planned question, streamed: `questions_per_syllabus` fresh draws per kept syllabus."""
    paths = {d.id: d.path for d in kept_disciplines(settings)}
    cfg = settings.homework
    for s in kept_records(settings, syllabus.STAGE):
        field, subfield = paths[s.discipline_id][:2]
        for d in homework.plan(s, cfg.questions_per_syllabus, cfg.challenging_ratio, settings.seed):
            yield homework.QuestionTask(s, d, field=field, subfield=subfield)
