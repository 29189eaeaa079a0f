"""Records a regeneration replaced: their ids in `superseded.jsonl` (append-only), read by later stages and data.

Superseded records stay on disk as every record does; the quality stage no longer judges them and the data set
leaves them out. `stages.regenerate` writes the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from glan_utils.core.jsonl import JsonlWriter, iter_jsonl

SUPERSEDED = "superseded.jsonl"


def superseded_ids(run_dir: Path) -> set[str]:
    """Ids of question and QA-pair records that a regeneration replaced."""
    return {row["id"] for row in iter_jsonl(Path(run_dir) / SUPERSEDED)}


def supersede(run_dir: Path, ids: Iterable[str], node_id: str, round_: int) -> None:
    """Mark records as replaced by regeneration `round_` of `node_id`."""
    with JsonlWriter(Path(run_dir) / SUPERSEDED) as out:
        for record_id in ids:
            out.write({"id": record_id, "node_id": node_id, "round": round_})
