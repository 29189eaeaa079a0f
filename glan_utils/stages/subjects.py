"""Paper §2.2: subjects per discipline, sampled in several rounds (T=1.0, top-p 0.95) and merged.

Each round is its own cached call (`sample_index=round`) stored raw as a `SubjectRound`, so resume works per
round and merging is a pure function that can be re-run for free with another threshold. Names merge when
their normalised forms share enough words (order ignored); a merged subject remembers every round that
proposed it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import partial
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from glan_utils.core.records import Failure, Record, Subject, TaxonomyNode
from glan_utils.llm.prompts import RenderedPrompt, render
from glan_utils.runs.store import RunStore
from glan_utils.settings import Settings
from glan_utils.stages.base import NAME_MAX, Caller, Reply, ShortText, bounded_list
from glan_utils.stages.registry import Plan, Stage, StageReport, finish, run_pending
from glan_utils.stages.selection import kept_disciplines

STAGE_ROUNDS = "subject_rounds"
NAME = "subjects"
EXAMPLE_DISCIPLINE = TaxonomyNode(
    name="Linear Algebra", level="discipline", path=["Mathematics", "Algebra", "Linear Algebra"]
)


class SubjectProposal(BaseModel):
    """One subject proposed for a discipline (paper §2.2)."""

    subject_name: str = Field(min_length=1, max_length=NAME_MAX)
    level: str = Field(min_length=1, max_length=40, description="e.g. 'undergraduate year 1' or 'graduate'")
    subtopics: list[ShortText] = Field(default_factory=list, max_length=8)


class SubjectRound(Record):
    """The raw subjects one sampling round proposed for one discipline."""

    stage_name: ClassVar[str] = STAGE_ROUNDS

    discipline_id: str
    discipline: str
    round: int
    proposals: list[SubjectProposal] = Field(default_factory=list)

    def identity(self) -> Any:
        return [self.discipline_id, self.round, [p.model_dump() for p in self.proposals]]


@dataclass(frozen=True)
class RoundTask:
    """Sampling round `round` for one discipline."""

    discipline: TaxonomyNode
    round: int

    @property
    def id(self) -> str:
        return f"{self.discipline.id}:{self.round}"


def round_tasks(disciplines: Iterable[TaxonomyNode], rounds: int) -> list[RoundTask]:
    return [RoundTask(d, r) for d in disciplines for r in range(rounds)]


def subjects_prompt(discipline: TaxonomyNode, settings: Settings) -> RenderedPrompt:
    return render(
        "subjects",
        discipline=discipline.name,
        path=discipline.path,
        count=settings.subjects.per_round,
        language=settings.language,
    )


async def sample_round(caller: Caller, task: RoundTask, settings: Settings) -> list[SubjectRound] | Failure:
    """One round: ask for `per_round` subjects at the sampling temperature."""
    cfg = settings.subjects
    return await caller.generate(
        task.id,
        subjects_prompt(task.discipline, settings),
        partial(_round, task, cfg.per_round),
        schema=bounded_list(SubjectProposal, 1, cfg.per_round),
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_tokens=cfg.max_tokens,
        sample_index=task.round,
    )


def _round(task: RoundTask, per_round: int, reply: Reply) -> list[SubjectRound]:
    return [
        SubjectRound(
            discipline_id=task.discipline.id,
            discipline=task.discipline.name,
            round=task.round,
            proposals=reply.parsed.items[:per_round],
            provenance=reply.provenance([task.discipline.id]),
        )
    ]


def normalise(name: str) -> str:
    """Casefolded, accent- and punctuation-free, single-spaced."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode() or name
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def similarity(a: str, b: str) -> float:
    """Word-level ratio of two normalised names, word order ignored, in [0, 1].

    Words, not characters: "Organic Chemistry" and "Inorganic Chemistry" share 94% of their characters but are
    different subjects (0.5 here), while "Algebra, Linear" and "linear algebra" are the same one (1.0).
    """
    words_a, words_b = sorted(normalise(a).split()), sorted(normalise(b).split())
    return SequenceMatcher(None, words_a, words_b).ratio()


@dataclass
class MergeResult:
    """Merged subjects and how many proposals were folded into an earlier one."""

    subjects: list[Subject]
    proposals: int
    merged: int


def merge_rounds(rounds: Iterable[SubjectRound], threshold: float, max_subjects: int | None = None) -> MergeResult:
    """Merge near-duplicate names per discipline, in (discipline, round) order so the result is deterministic.

    The first spelling and level win; subtopics are unioned; `rounds` lists every round that proposed it.
    With a cap, the subjects proposed in most rounds are kept.
    """
    groups: dict[str, list[SubjectRound]] = {}
    for rec in sorted(rounds, key=lambda r: (r.discipline_id, r.round)):
        groups.setdefault(rec.discipline_id, []).append(rec)
    subjects: list[Subject] = []
    proposals = merged = 0
    for recs in groups.values():
        clusters: list[dict[str, Any]] = []
        for rec in recs:
            for prop in rec.proposals:
                proposals += 1
                match = next((c for c in clusters if similarity(c["name"], prop.subject_name) >= threshold), None)
                if match is None:
                    clusters.append(
                        {
                            "name": prop.subject_name.strip(),
                            "level": prop.level,
                            "rec": rec,
                            "subtopics": list(prop.subtopics),
                            "rounds": [rec.round],
                        }
                    )
                    continue
                merged += 1
                match["rounds"] = sorted({*match["rounds"], rec.round})
                match["subtopics"] += [t for t in prop.subtopics if t not in match["subtopics"]]
        ranked = sorted(clusters, key=lambda c: -len(c["rounds"]))[:max_subjects] if max_subjects else clusters
        subjects += [_subject(c) for c in ranked]
    return MergeResult(subjects, proposals, merged)


def _subject(cluster: dict[str, Any]) -> Subject:
    rec: SubjectRound = cluster["rec"]
    return Subject(
        discipline_id=rec.discipline_id,
        discipline=rec.discipline,
        subject_name=cluster["name"],
        level=cluster["level"],
        subtopics=cluster["subtopics"][:20],
        rounds=cluster["rounds"],
        task_id=rec.discipline_id,
        provenance=rec.provenance,
    )


async def run(settings: Settings) -> StageReport:
    """Sample `rounds` lists of subjects per kept discipline, then merge near-duplicates into `subjects`."""
    kept = kept_disciplines(settings)
    tasks = round_tasks(kept, settings.subjects.rounds)
    report = await run_pending(settings, STAGE_ROUNDS, NAME, lambda: tasks, sample_round, total=len(tasks))
    finish(settings, report)
    store, kept_ids = RunStore(settings.run_dir), {d.id for d in kept}
    rounds = [r for r in store.iter_records(STAGE_ROUNDS, SubjectRound) if r.discipline_id in kept_ids]
    merged = merge_rounds(rounds, settings.subjects.merge_threshold, settings.subjects.max_subjects)
    added = store.append(NAME, merged.subjects)
    report.extra = {
        "proposals": merged.proposals,
        "duplicates_merged": merged.merged,
        "subjects": len(merged.subjects),
        "subjects_new": added,
    }
    report.stage = NAME
    return finish(settings, report)


def plan(settings: Settings, disciplines: int) -> Plan:
    """`rounds` calls per discipline; at most `rounds x per_round` subjects each (or `max_subjects`)."""
    cfg = settings.subjects
    proposals = cfg.rounds * cfg.per_round
    return Plan(disciplines * cfg.rounds, disciplines * min(cfg.max_subjects or proposals, proposals))


def preview(settings: Settings) -> RenderedPrompt:
    discipline = next(iter(kept_disciplines(settings)), None) or EXAMPLE_DISCIPLINE
    return subjects_prompt(discipline, settings)


STAGE = Stage(
    record=Subject,
    run=run,
    plan=plan,
    preview=preview,
    notebook="02_subjects",
)
