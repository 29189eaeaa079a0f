"""What notebook 04 shows of the follow-up conversations: what the turns add to the plan, the kind mix per
discipline, and sample conversations turn by turn."""

from __future__ import annotations

import pandas as pd

from glan_utils.runs.store import RunStore
from glan_utils.settings import FOLLOWUP_KINDS, Settings
from glan_utils.stages.estimates import estimate_stage
from glan_utils.stages.followups import NAME, conversations, history


def turns_added(settings: Settings) -> pd.DataFrame:
    """The follow-up rounds beside the single-turn pairs: calls, tokens and cost (upper bounds), and the share
    the rounds add to the answers stage."""
    rows = {name: estimate_stage(settings, name) for name in ("answers", NAME)}
    frame = pd.DataFrame(
        {
            name: {
                "calls": e.calls,
                "prompt_tokens": e.prompt_tokens,
                "completion_tokens": e.completion_tokens,
                "cost_usd": round(e.cost_usd, 4),
            }
            for name, e in rows.items()
        }
    ).T.astype(float)
    frame.loc[f"{NAME} / answers"] = (frame.loc[NAME] / frame.loc["answers"].where(frame.loc["answers"] > 0)).round(2)
    return frame


def kind_mix(settings: Settings) -> pd.DataFrame:
    """Follow-up rounds per discipline and kind (every kind a column, in the registry's order), with a total."""
    rounds = [r for done in conversations(settings).values() for r in done]
    frame = pd.DataFrame([{"discipline": r.discipline, "kind": r.kind} for r in rounds], columns=["discipline", "kind"])
    mix = pd.crosstab(frame["discipline"], frame["kind"]).reindex(columns=list(FOLLOWUP_KINDS), fill_value=0)
    mix["total"] = mix.sum(axis=1)
    return mix


def sample_conversations(settings: Settings, n: int = 3) -> pd.DataFrame:
    """The first `n` conversations turn by turn: question and answer, then each round with its kind and note (the
    planted mistake of "check my attempt", the later concept of "connect")."""
    pairs = {p.id: p for p in RunStore(settings.run_dir).iter_records("answers")}
    columns = ["discipline", "pair_id", "turn", "role", "kind", "note", "content"]
    rows = []
    for pair_id, done in list(conversations(settings).items())[:n]:
        pair = pairs[pair_id]
        labels = [("question", ""), ("answer", "")]
        labels += [label for r in done for label in ((r.kind, r.mistake or r.concept), ("reply", ""))]
        for turn, ((kind, note), message) in enumerate(zip(labels, history(pair, done), strict=True)):
            rows.append([pair.discipline, pair_id, turn // 2, message["role"], kind, note, message["content"]])
    return pd.DataFrame(rows, columns=columns)
