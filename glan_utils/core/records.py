"""The records each stage writes: pydantic models with stable ids and provenance.

Every record's id is a hash of its content and its parents' ids, so a rerun recognises work it already has, and two
runs that produce the same thing agree on its id. Provenance says which prompt (and its hash), model and sampling
parameters made it, so a data set can always be traced back to how it was generated.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from glan_utils.core.ids import content_hash

NodeLevel = Literal["field", "subfield", "discipline"]
Difficulty = Literal["basic", "challenging"]
LEVELS: tuple[NodeLevel, ...] = ("field", "subfield", "discipline")


def child_level(level: NodeLevel) -> NodeLevel | None:
    """The level below `level` in the taxonomy (None under a discipline)."""
    index = LEVELS.index(level)
    return LEVELS[index + 1] if index + 1 < len(LEVELS) else None


def utc_now() -> datetime:
    """Timezone-aware now, so records from different machines sort correctly."""
    return datetime.now(UTC)


class Provenance(BaseModel):
    """How a record was made: template, model, sampling settings and the call that produced it."""

    prompt: str = Field(description="Template name, e.g. 'subjects'.")
    prompt_hash: str = Field(description="Hash of the template source; changes when the prompt text changes.")
    model: str
    params: dict[str, Any] = Field(default_factory=dict, description="Sampling parameters sent with the call.")
    cache_key: str | None = Field(default=None, description="Key of the LLM call in the response cache.")
    parent_ids: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utc_now)


class Record(BaseModel):
    """Base of all stage outputs. `task_id` names the unit of work that produced it, for resume."""

    model_config = ConfigDict(extra="forbid")
    stage_name: ClassVar[str] = ""  # the stage whose `<stage>.jsonl` holds records of this type ("" = none)

    id: str = ""
    task_id: str = ""
    provenance: Provenance | None = None

    def identity(self) -> Any:
        """The content that defines this record; its hash is the id."""
        raise NotImplementedError

    def model_post_init(self, __context: Any) -> None:
        if not self.id:
            self.id = content_hash(type(self).__name__, self.identity())


class TaxonomyNode(Record):
    """A field, sub-field or discipline. Disciplines are the leaves that later stages expand."""

    stage_name: ClassVar[str] = "taxonomy"

    name: str
    level: NodeLevel
    parent_id: str | None = None
    path: list[str] = Field(default_factory=list, description="Names from the root field down to this node.")
    description: str = ""
    source: Literal["llm", "user"] = "llm"

    def identity(self) -> Any:
        return [self.level, self.path or [self.name]]


class Subject(Record):
    """A subject a student of one discipline should learn (paper §2.2), merged across sampling rounds."""

    stage_name: ClassVar[str] = "subjects"

    discipline_id: str
    discipline: str
    subject_name: str
    level: str = Field(description="From the fixed vocabulary `subjects.levels`; part of the identity.")
    subtopics: list[str] = Field(default_factory=list)
    rounds: list[int] = Field(default_factory=list, description="Sampling rounds that proposed this subject.")

    def identity(self) -> Any:
        # (name, level): "Calculus" for high school and for undergraduates are two subjects
        return [self.discipline_id, self.subject_name.casefold().strip(), self.level.casefold().strip()]


class ClassSession(BaseModel):
    """One class session of a syllabus, with the key concepts homework questions are built from."""

    index: int = Field(ge=1)
    title: str
    description: str = ""
    key_concepts: list[str] = Field(min_length=1)


class Syllabus(Record):
    """The syllabus of one subject: ordered class sessions (paper: 10-30, ~5 key concepts each)."""

    stage_name: ClassVar[str] = "syllabi"

    subject_id: str
    discipline_id: str
    discipline: str
    subject_name: str
    level: str
    sessions: list[ClassSession] = Field(min_length=1)
    overview: str = Field("", description="The course introduction the homework prompt shows (paper §2.3-2.4).")
    objectives: list[str] = Field(default_factory=list, description="Teaching objectives of the course.")
    outcomes: list[str] = Field(default_factory=list, description="What a student can do after it (testable).")
    prerequisites: list[str] = Field(default_factory=list)

    def identity(self) -> Any:
        sessions = [s.model_dump() for s in self.sessions]
        course = [self.overview, self.objectives, self.outcomes, self.prerequisites]
        # a syllabus without the course parts (older runs) keeps the id it always had
        return [self.subject_id, sessions, *([course] if any(course) else [])]


class Placement(BaseModel):
    """Where a homework question sits and what it draws on; a question and its QA pair carry the same."""

    syllabus_id: str
    subject_id: str
    discipline_id: str
    field: str = ""
    subfield: str = ""
    discipline: str
    subject: str
    level: str
    difficulty: Difficulty
    session_indices: list[int]
    concepts: list[str]
    question_type: str = Field("", description="The format drawn for the question, e.g. 'derivation or proof'.")


class Question(Placement, Record):
    """A homework question sampled from a syllabus: basic (1 session) or challenging (2 sessions)."""

    stage_name: ClassVar[str] = "questions"

    sample_index: int = Field(description="Which sample of this syllabus this question is (seeds its concept draw).")
    language: str = "English"
    question: str

    def identity(self) -> Any:
        return [
            self.syllabus_id,
            self.difficulty,
            self.session_indices,
            self.concepts,
            self.sample_index,
            self.question,
            *([self.question_type] if self.question_type else []),  # untyped (older) questions keep their ids
        ]


class _AnswerOf(Record):
    """The question a QA pair answers; its own base so the parent id stays first in the stored record."""

    question_id: str


class QAPair(Placement, _AnswerOf):
    """A question with its answer: the unit of the training set. Carries every parent's id."""

    stage_name: ClassVar[str] = "answers"

    language: str = "English"
    question: str
    answer: str
    question_provenance: Provenance | None = None

    def identity(self) -> Any:
        return [self.question_id, self.answer]


class Verification(BaseModel):
    """An independent check of a QA pair's final answer: a second answer compared with sympy, or code run."""

    kind: Literal["closed_answer", "code"]
    agreed: bool | None = Field(description="True = the checks agree; False = they disagree; None = undecided.")
    first: str = Field("", description="The final answer (or code outcome) of the pair.")
    second: str = Field("", description="The independent answer's final answer (or the test outcome).")
    detail: str = ""


class QualityVerdict(Record):
    """The quality stage's verdict on one QA pair: rubric scores with a rationale, rule flags, verifications."""

    stage_name: ClassVar[str] = "quality"

    pair_id: str
    question_id: str
    discipline_id: str
    subject_id: str
    scores: dict[str, int] = Field(description="Rubric criterion -> 1..5, as the judge gave it.")
    score: float = Field(description="Mean of the rubric scores, 1..5.")
    rationale: str = ""
    flags: list[str] = Field(default_factory=list, description="Names of the rule checks the pair failed.")
    verifications: list[Verification] = Field(default_factory=list)
    trimmed: list[str] = Field(
        default_factory=list, description="Texts shown to the judge trimmed to fit its context window."
    )

    @property
    def disagreed(self) -> bool:
        """Whether any verifier found the pair's final answer wrong."""
        return any(v.agreed is False for v in self.verifications)

    def identity(self) -> Any:
        return [self.pair_id, self.scores, self.rationale, self.flags, [v.model_dump() for v in self.verifications]]


class FollowUp(Record):
    """One follow-up round on a QA pair: a student turn of a drawn kind and the tutor's reply (not in the paper).

    Round `turn` (1, 2, ...) saw the question, the answer and every earlier round of the same pair. The kind is
    drawn from (`seed`, pair, turn) alone, so a run with more turns keeps the earlier ones."""

    stage_name: ClassVar[str] = "followups"

    pair_id: str
    discipline_id: str
    subject_id: str
    discipline: str
    turn: int = Field(ge=1)
    kind: str = Field(description="What the student does: one of `settings.FOLLOWUP_KINDS`.")
    seed: int = Field(description="The run seed the kind (and the later concept) was drawn with.")
    student: str
    tutor: str
    mistake: str = Field("", description="check_attempt: the mistake the student planted, for the judge.")
    concept: str = Field("", description="connect: the later session's concept the student asks about.")
    language: str = "English"
    flags: list[str] = Field(default_factory=list, description="The rule checks this round failed.")
    scores: dict[str, int] = Field(default_factory=dict, description="Conversation rubric -> 1..5 (`followups.judge`).")
    rationale: str = Field("", description="The judge's rationale of the scores.")
    student_provenance: Provenance | None = None

    @property
    def score(self) -> float | None:
        """Mean rubric score, 1..5 (None: not judged)."""
        return sum(self.scores.values()) / len(self.scores) if self.scores else None

    def identity(self) -> Any:
        return [self.pair_id, self.turn, self.kind, self.student, self.tutor]


class Failure(Record):
    """A unit of work that did not produce a valid record, kept with its reason and raw output (never dropped)."""

    stage: str
    reason: str
    raw: str | None = None
    created_at: datetime = Field(default_factory=utc_now)

    def identity(self) -> Any:
        return [self.stage, self.task_id, self.reason, self.raw, self.created_at.isoformat()]


def pipeline_stages() -> list[str]:
    """The generation stages in pipeline order, from the record types defined here (in that order), for readers
    that must not import the stages (`glan status`); `stages.STAGES` lists the same names in the same order."""

    def walk(cls: type[Record]) -> list[type[Record]]:
        return [c for sub in cls.__subclasses__() if sub.__module__ == __name__ for c in (sub, *walk(sub))]

    return list(dict.fromkeys(cls.stage_name for cls in walk(Record) if cls.stage_name))


def record_type(stage: str) -> type[Record]:
    """The record type stored in `<stage>.jsonl`: each record class names its stage, so no table is kept."""
    todo, found = list(Record.__subclasses__()), {}
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.stage_name:
            found[cls.stage_name] = cls
    if stage not in found:
        raise KeyError(f"no record type is stored under stage {stage!r}")
    return found[stage]
