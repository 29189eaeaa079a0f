"""The follow-up rounds a data set adds to its pairs: per pair, the chat turns after the answer.

The rounds are the follow-up stage's (`stages.followups`) at the `followups.turns` the run last ran it with (the
run's `config.yaml`). A conversation ends before a round with a flag the data set drops
(`dataset.quality.drop_flags`) or a conversation-rubric score below `dataset.quality.min_score`, before a missing
round, and before a student message that repeats an earlier user turn of the data set (exact after case and
spacing; the pairs themselves are deduplicated on their questions with MinHash). The pair itself stays, with the
rounds before the cut. Decontamination scans every user and every assistant turn.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from glan_utils.core.records import FollowUp
from glan_utils.runs.store import RunStore
from glan_utils.settings import QualityFilterSettings
from glan_utils.stages.followups import round_messages, rounds_by_pair
from glan_utils.stages.rules import DROPPING


def followup_messages(store: RunStore, quality: QualityFilterSettings) -> dict[str, list[dict[str, str]]]:
    """Per pair id, the chat messages its follow-up rounds add (student as `user`, tutor as `assistant`). With the
    quality filters on, a round with a dropped rule flag or a judged round below `min_score` ends its conversation."""
    turns = int((store.read_config().get(FollowUp.stage_name) or {}).get("turns") or 0)
    if not turns or not store.records_path(FollowUp.stage_name).exists():
        return {}
    drop = set(DROPPING if quality.drop_flags is None else quality.drop_flags)

    def keep(record: FollowUp) -> bool:
        low = record.score is not None and record.score < quality.min_score
        return not quality.enabled or not (low or drop.intersection(record.flags))

    rounds = rounds_by_pair(store.iter_records(FollowUp.stage_name, FollowUp), turns, keep)
    return {pair_id: [m for r in done for m in round_messages(r)] for pair_id, done in rounds.items()}


def user_turns(row: dict[str, Any]) -> list[str]:
    """Every user turn of an exported row: the question, then each follow-up's student message."""
    return [row["question"], *(m["content"] for m in row.get("followups") or () if m["role"] == "user")]


def assistant_turns(row: dict[str, Any]) -> list[str]:
    """Every assistant turn of an exported row: the answer, then each follow-up's tutor reply."""
    return [row["answer"], *(m["content"] for m in row.get("followups") or () if m["role"] == "assistant")]


def attach_followups(rows: Iterable[dict[str, Any]], messages: dict[str, list[dict[str, str]]]) -> Iterator[dict]:
    """Each row with its follow-up messages under `followups`; a round whose student message repeats an earlier
    user turn (a question or a student message, case and spacing ignored) ends that conversation."""
    if not messages:
        yield from rows
        return
    seen: set[int] = set()
    for row in rows:
        seen.add(_key(row["question"]))
        kept: list[dict[str, str]] = []
        more = messages.get(row["id"], [])
        for user, assistant in zip(more[::2], more[1::2], strict=True):
            key = _key(user["content"])
            if key in seen:
                break
            seen.add(key)
            kept += [user, assistant]
        yield row | {"followups": kept}


def _key(text: str) -> int:
    return hash(" ".join(text.casefold().split()))
