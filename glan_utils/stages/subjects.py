"""Paper §2.2: subjects per discipline, sampled in several rounds (T=1.0, top-p 0.95) and merged.

Each round is its own cached call (`sample_index=round`) stored raw as a `SubjectRound`, so resume works per
round and merging is a pure function that can be re-run for free with another threshold. A strong model at T=1.0
returns the same canonical core every round, so round r gets a focus (core, electives, advanced, graduate,
applied, interdisciplinary, ...: `subjects.focuses`, ten distinct ones) and the names the earlier rounds of its
discipline already collected; rounds therefore run one after another per discipline (disciplines in parallel).
Each round asks for up to about `max_subjects / rounds` subjects ("stop when you run out"), and the cap keeps the
rounds' subjects in turn, so every focus reaches the data. `level` comes from a fixed
vocabulary (`subjects.levels`, enforced by the reply schema). Subjects merge by (name, level): same level, same
sequence markers ("I" vs "II", "advanced"), and sentence-embedding cosine of the names stripped of course
filler ("Introduction to", "Principles of") at `merge_threshold`; the threshold was chosen on the labelled pairs
in tests/data/course_pairs.csv. A merged subject remembers every round that proposed it.
"""

from __future__ import annotations

import asyncio
import math
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache, partial
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, Field, create_model

from glan_utils.core.records import Failure, Record, Subject, TaxonomyNode
from glan_utils.llm.prompts import RenderedPrompt, render
from glan_utils.runs.store import RunStore
from glan_utils.settings import Settings
from glan_utils.stages import extraction
from glan_utils.stages.base import NAME_MAX, Caller, Reply, ShortText, bounded_list
from glan_utils.stages.bounds import budget
from glan_utils.stages.registry import Plan, Stage, StageReport, finish, run_pending
from glan_utils.stages.selection import kept_disciplines, record_plan

STAGE_ROUNDS = "subject_rounds"
ROUND_MARGIN = 1.25
"""Each round asks for this many times its share of the cap: merging removes some proposals as duplicates."""
NAME = "subjects"
EXAMPLE_DISCIPLINE = TaxonomyNode(
    name="Linear Algebra", level="discipline", path=["Mathematics", "Algebra", "Linear Algebra"]
)


class SubjectProposal(BaseModel):
    """One subject proposed for a discipline (paper §2.2)."""

    subject_name: str = Field(min_length=1, max_length=NAME_MAX)
    level: str = Field(min_length=1, max_length=40, description="One of `subjects.levels`.")
    subtopics: list[ShortText] = Field(default_factory=list, max_length=8)


@lru_cache(maxsize=16)
def proposal_reply(levels: tuple[str, ...]) -> type[BaseModel]:
    """The reply schema of one proposal: `level` must be one of `levels` (an enum in the JSON schema)."""
    canonical = {level.casefold(): level for level in levels}
    level_type = Annotated[
        Literal[levels],  # type: ignore[valid-type]
        BeforeValidator(lambda v: canonical.get(str(v).strip().casefold(), v)),
    ]
    return create_model("SubjectProposalReply", __base__=SubjectProposal, level=(level_type, ...))


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
    """Round-major: every discipline's round r is scheduled before any round r+1, which waits for it."""
    kept = list(disciplines)
    return [RoundTask(d, r) for r in range(rounds) for d in kept]


def subjects_prompt(
    discipline: TaxonomyNode, settings: Settings, round_: int = 0, known: list[str] | None = None, paper: bool = False
) -> RenderedPrompt:
    """Round `round_`'s prompt: its focus, and the `known` names earlier rounds collected for the discipline."""
    cfg = settings.subjects
    return render(
        "subjects",
        discipline=discipline.name,
        path=discipline.path,
        count=round_count(settings),
        focus=cfg.focuses[round_ % len(cfg.focuses)] if cfg.focuses else "any subjects of the discipline",
        known=known or [],
        levels=cfg.levels,
        language=settings.language,
        paper=paper,
    )


def known_names(rounds: Iterable[SubjectRound], discipline_id: str, before: int) -> list[str]:
    """Distinct "name (level)" proposed for a discipline in rounds before `before`, in (round, reply) order."""
    names: dict[str, str] = {}
    for rec in sorted((r for r in rounds if r.discipline_id == discipline_id), key=lambda r: r.round):
        if rec.round < before:
            for prop in rec.proposals:
                names.setdefault(normalise(prop.subject_name), f"{prop.subject_name.strip()} ({prop.level})")
    return list(names.values())


class RoundWork:
    """Runs the rounds of one stage run: round r of a discipline waits for its earlier rounds and sees their names.

    Rounds stored by an earlier run are read once; rounds of this run are handed on in memory. Tasks are
    scheduled round-major, so the rounds a task waits for were started before it (no deadlock); a failed round
    simply contributes no names.
    """

    def __init__(self, stored: Iterable[SubjectRound]) -> None:
        self.rounds: list[SubjectRound] = list(stored)
        self.stored = {(r.discipline_id, r.round) for r in self.rounds}
        self.finished: dict[tuple[str, int], asyncio.Event] = {}

    def _event(self, key: tuple[str, int]) -> asyncio.Event:
        return self.finished.setdefault(key, asyncio.Event())

    async def __call__(self, caller: Caller, task: RoundTask, settings: Settings) -> list[SubjectRound] | Failure:
        disc = task.discipline.id
        try:
            for earlier in range(task.round):
                if (disc, earlier) not in self.stored:
                    await self._event((disc, earlier)).wait()
            result = await sample_round(caller, task, settings, known_names(self.rounds, disc, task.round))
            if not isinstance(result, Failure):
                self.rounds += result
            return result
        finally:
            self._event((disc, task.round)).set()


async def sample_round(
    caller: Caller, task: RoundTask, settings: Settings, known: list[str] | None = None
) -> list[SubjectRound] | Failure:
    """One round: ask for up to `round_count` subjects with the round's focus, at the sampling temperature."""
    cfg = settings.subjects
    count = round_count(settings)
    return await extraction.generate(
        caller,
        cfg.structure,
        task.id,
        lambda paper: subjects_prompt(task.discipline, settings, task.round, known, paper),
        partial(_round, task, count),
        schema=bounded_list(proposal_reply(tuple(cfg.levels)), 1, count),
        what="list of subjects",
        shape={"items": [{"subject_name": "...", "level": " | ".join(cfg.levels), "subtopics": ["..."]}]},
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        sample_index=task.round,
        **budget(settings, cfg),
    )


def _round(task: RoundTask, per_round: int, reply: Reply) -> list[SubjectRound]:
    return [
        SubjectRound(
            discipline_id=task.discipline.id,
            discipline=task.discipline.name,
            round=task.round,
            proposals=[SubjectProposal.model_validate(p.model_dump()) for p in reply.parsed.items[:per_round]],
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


# Course-title words that do not change which course it is ("Intro to X" = "Principles of X" = "X"), numerals
# spelled one way, and the markers that do make two titles different courses ("Calculus I" vs "Calculus II").
FILLER = frozenset(
    {
        "introduction",
        "intro",
        "introductory",
        "to",
        "principles",
        "principle",
        "of",
        "fundamentals",
        "fundamental",
        "basics",
        "basic",
        "foundations",
        "foundational",
        "elements",
        "survey",
        "an",
        "the",
        "a",
        "concepts",
        "and",
        "in",
        "for",
    }
)
NUMERALS = {"1": "i", "2": "ii", "3": "iii", "4": "iv", "5": "v", "one": "i", "two": "ii", "three": "iii"}
MARKERS = frozenset(
    ["i", "ii", "iii", "iv", "v", "advanced", "graduate", "undergraduate", "intermediate", "elementary", "applied"]
)


def course_words(name: str) -> list[str]:
    """The words that say which course a title is: normalised, numerals unified, filler dropped."""
    words = [NUMERALS.get(w, w) for w in normalise(name).split()]
    return [w for w in words if w not in FILLER] or words


def markers(name: str) -> frozenset[str]:
    """Sequence and level words of a title; two titles with different markers are different courses."""
    return frozenset(w for w in course_words(name) if w in MARKERS)


Scorer = Callable[[int, int], float]


def embedding_scores(names: list[str]) -> Scorer:
    """Cosine of two titles' filler-free forms (all-MiniLM-L6-v2, offline, cached by text)."""
    from glan_utils.llm.embeddings import cosine_matrix, embed  # loads torch: only when merging by embedding

    matrix = cosine_matrix(embed([" ".join(course_words(n)) for n in names]))
    return lambda i, j: float(matrix[i, j])


def word_scores(names: list[str]) -> Scorer:
    """Word-level similarity of two titles (no model needed), computed only for the pairs compared."""
    return lambda i, j: similarity(names[i], names[j])


def same_course(a: SubjectProposal, b: SubjectProposal, score: float, threshold: float) -> bool:
    """One course: same level, same sequence markers, and names at least `threshold` alike."""
    return (
        a.level.casefold() == b.level.casefold()
        and markers(a.subject_name) == markers(b.subject_name)
        and (score >= threshold)
    )


@dataclass
class MergeResult:
    """Merged subjects and how many proposals were folded into an earlier one."""

    subjects: list[Subject]
    proposals: int
    merged: int


def merge_rounds(
    rounds: Iterable[SubjectRound], threshold: float, max_subjects: int | None = None, by_embedding: bool = False
) -> MergeResult:
    """Merge proposals of one course per discipline, in (discipline, round) order so the result is deterministic.

    A proposal joins the first cluster whose first proposal is the same course (`same_course`); the first
    spelling wins; subtopics are unioned; `rounds` lists every round that proposed it. With a cap, the rounds take
    turns (`round_robin`), so every round's focus reaches the kept subjects.
    """
    groups: dict[str, list[SubjectRound]] = {}
    for rec in sorted(rounds, key=lambda r: (r.discipline_id, r.round)):
        groups.setdefault(rec.discipline_id, []).append(rec)
    subjects: list[Subject] = []
    proposals = merged = 0
    for recs in groups.values():
        items = [(rec, prop) for rec in recs for prop in rec.proposals]
        names = [prop.subject_name for _, prop in items]
        score = (embedding_scores if by_embedding else word_scores)(names) if items else word_scores(names)
        clusters: list[dict[str, Any]] = []
        for i, (rec, prop) in enumerate(items):
            match = next((c for c in clusters if same_course(c["first"], prop, score(c["at"], i), threshold)), None)
            if match is None:
                clusters.append(
                    {"first": prop, "at": i, "rec": rec, "subtopics": list(prop.subtopics), "rounds": [rec.round]}
                )
                continue
            merged += 1
            match["rounds"] = sorted({*match["rounds"], rec.round})
            match["subtopics"] += [t for t in prop.subtopics if t not in match["subtopics"]]
        proposals += len(items)
        subjects += [_subject(c) for c in (round_robin(clusters, max_subjects) if max_subjects else clusters)]
    return MergeResult(subjects, proposals, merged)


def round_robin(clusters: list[dict[str, Any]], cap: int) -> list[dict[str, Any]]:
    """At most `cap` clusters, the rounds taking turns: each round's next subject (those proposed in most rounds
    first, then in reply order), round after round, until the cap. A cap that keeps the first-come subjects would
    keep the first rounds only, and the later rounds' focuses (interdisciplinary, research, ...) would be paid for
    and never used."""
    by_round: dict[int, list[dict[str, Any]]] = {}
    for cluster in sorted(clusters, key=lambda c: -len(c["rounds"])):  # stable: reply order within a count
        by_round.setdefault(cluster["rounds"][0], []).append(cluster)
    queues = [by_round[r] for r in sorted(by_round)]
    kept = [queue[i] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]
    return kept[:cap]


def round_count(settings: Settings) -> int:
    """Subjects asked for per round: about `max_subjects / rounds` with a margin for the ones merging removes,
    at most `per_round`; `per_round` when there is no cap."""
    cfg = settings.subjects
    if cfg.max_subjects is None:
        return cfg.per_round
    return max(1, min(cfg.per_round, math.ceil(ROUND_MARGIN * cfg.max_subjects / cfg.rounds)))


def _subject(cluster: dict[str, Any]) -> Subject:
    rec: SubjectRound = cluster["rec"]
    return Subject(
        discipline_id=rec.discipline_id,
        discipline=rec.discipline,
        subject_name=cluster["first"].subject_name.strip(),
        level=cluster["first"].level,
        subtopics=cluster["subtopics"][:20],
        rounds=cluster["rounds"],
        task_id=rec.discipline_id,
        provenance=rec.provenance,
    )


async def run(settings: Settings) -> StageReport:
    """Sample `rounds` lists per kept discipline (round r sees rounds < r), then merge them into `subjects`."""
    kept = kept_disciplines(settings)
    store, kept_ids = RunStore(settings.run_dir), {d.id for d in kept}
    tasks = round_tasks(kept, settings.subjects.rounds)
    work = RoundWork(r for r in store.iter_records(STAGE_ROUNDS, SubjectRound) if r.discipline_id in kept_ids)
    report = await run_pending(settings, STAGE_ROUNDS, NAME, lambda: tasks, work, total=len(tasks))
    finish(settings, report)
    rounds = [r for r in store.iter_records(STAGE_ROUNDS, SubjectRound) if r.discipline_id in kept_ids]
    cfg = settings.subjects
    merged = merge_rounds(rounds, cfg.merge_threshold, cfg.max_subjects, by_embedding=cfg.merge_by_embedding)
    added = store.append(NAME, merged.subjects)
    record_plan(settings, subjects=[s.id for s in merged.subjects])  # a lower cap or other threshold replans
    report.extra = {
        "proposals": merged.proposals,
        "duplicates_merged": merged.merged,
        "subjects": len(merged.subjects),
        "subjects_new": added,
    }
    report.stage = NAME
    return finish(settings, report)


def plan(settings: Settings, disciplines: int) -> Plan:
    """`rounds` calls per discipline; at most `rounds x round_count` subjects each (or `max_subjects`)."""
    cfg = settings.subjects
    proposals = cfg.rounds * round_count(settings)
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
    parts=(STAGE_ROUNDS,),
    needs="taxonomy",
    typical_tokens=1_000,
)
