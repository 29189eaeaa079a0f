"""What each stage works on: the taxonomy as kept by review, and the records under the kept disciplines.

A review can change after later stages ran, so every stage re-selects its inputs here instead of trusting
files: work under a removed discipline is simply not planned any more (its records stay on disk, untouched).

The current taxonomy is the run's stored nodes, or, with a `taxonomy.source` file, that file's nodes (as the
taxonomy stage last resolved them to stored identities, `taxonomy_current.json`): a node deleted from the file is
not kept. `plan.json` holds the plan the data set is built from: the kept disciplines with their current names,
the subjects of the current merge and cap (written by the subjects stage), and the taxonomy and review versions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from glan_utils.core.ids import content_hash
from glan_utils.core.paths import PLAN, TAXONOMY_CURRENT, replace_file
from glan_utils.core.records import Record, Subject, TaxonomyNode
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


def write_json(path: Path, value: Any) -> None:
    """Replace a small JSON file whole (atomically; a full disk is a StoreError)."""
    replace_file(path, json.dumps(value, ensure_ascii=False))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def current_nodes(settings: Settings) -> list[TaxonomyNode]:
    """The taxonomy before review: the `taxonomy.source` file's nodes as last resolved, else every stored node."""
    current = read_json(settings.run_dir / TAXONOMY_CURRENT) if settings.taxonomy.source else None
    if current is not None:
        return [TaxonomyNode.model_validate(row) for row in current]
    return list(RunStore(settings.run_dir).iter_records(TaxonomyNode.stage_name))


def kept_taxonomy(settings: Settings) -> list[TaxonomyNode]:
    """The taxonomy after review (all nodes accepted when there is none)."""
    return apply_review(current_nodes(settings), current_review(settings))


def kept_disciplines(settings: Settings) -> list[TaxonomyNode]:
    return disciplines(kept_taxonomy(settings))


def taxonomy_version(nodes: Iterable[TaxonomyNode]) -> str:
    """A hash of the kept taxonomy as later stages and the data set see it: ids, names and places."""
    return content_hash(sorted([n.id, n.name, n.parent_id or ""] for n in nodes))


def read_plan(run_dir: Path) -> dict[str, Any]:
    """The run's current plan (empty before a stage wrote one: older runs keep every record)."""
    return read_json(Path(run_dir) / PLAN) or {}


def record_plan(settings: Settings, subjects: Iterable[str] | None = None) -> dict[str, Any]:
    """Write the kept disciplines (with their current names), the taxonomy and review versions and, from the
    subjects stage, the planned subject ids into `plan.json`; returns it."""
    taxonomy = kept_taxonomy(settings)
    review = current_review(settings)
    plan = read_plan(settings.run_dir) | {
        "taxonomy_version": taxonomy_version(taxonomy),
        "review": review.content_id() if review else None,
        "disciplines": {d.id: d.path for d in disciplines(taxonomy)},
    }
    if subjects is not None:
        plan["subjects"] = sorted(subjects)
    write_json(settings.run_dir / PLAN, plan)
    return plan


def in_plan(record: Any, kept_ids: set[str], subjects: set[str] | None) -> bool:
    """Whether a record is under a kept discipline and, once the subjects stage wrote its plan, a planned subject."""
    if record.discipline_id not in kept_ids:
        return False
    subject = record.id if isinstance(record, Subject) else getattr(record, "subject_id", None)
    return subjects is None or subject is None or subject in subjects


def kept_records(settings: Settings, stage: str) -> Iterator[Any]:
    """Stream a stage's records that are in the current plan: under a kept discipline (a later review may drop
    some) and of a planned subject (a lower cap or another merge threshold may drop some)."""
    kept_ids = {d.id for d in kept_disciplines(settings)}
    planned = read_plan(settings.run_dir).get("subjects")
    subjects = set(planned) if planned is not None else None
    return (r for r in RunStore(settings.run_dir).iter_records(stage) if in_plan(r, kept_ids, subjects))


def count_kept(settings: Settings, stage: str) -> int:
    return sum(1 for _ in kept_records(settings, stage))


def first_record(settings: Settings, record: type[R]) -> R | None:
    """The run's first record of a type, for prompt previews; None before its stage ran."""
    return next(iter(RunStore(settings.run_dir).iter_records(record.stage_name, record)), None)
