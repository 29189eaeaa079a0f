"""Settings of the generation stages, one section per stage, named as the stage is (taxonomy ... answers)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from glan_utils.core.section import Section

Structure = Literal["schema", "paper"]
STRUCTURE_HELP = (
    "'schema': one call replies in JSON; 'paper': free text first, then a second call extracts the structure "
    "(paper §2.2-2.3)."
)
SUBJECT_LEVELS = (
    "high school",
    "undergraduate introductory",
    "undergraduate intermediate",
    "undergraduate advanced",
    "graduate",
    "vocational",
    "professional",
)
SUBJECT_FOCUSES = (
    "core courses every student of the discipline takes",
    "electives and specialised topics",
    "advanced undergraduate and graduate courses",
    "professional, vocational and applied courses used in industry and practice",
    "interdisciplinary courses that connect it with other disciplines",
)
QUESTION_TYPES = (
    "worked numeric problem",
    "derivation or proof",
    "code with tests",
    "case analysis",
    "compare and contrast",
    "multi-part problem",
    "short essay with stated criteria",
)

REMOTE_HELP = "max_tokens on a remote endpoint; the embedded model keeps the tight `max_tokens`."
RETRY_HELP = "Remote endpoints: cap of the one retry after finish_reason=length (twice the budget, at most this)."


class TaxonomySettings(Section):
    """Paper §2.1: fields -> sub-fields -> disciplines, generated or supplied by the user."""

    source: str | None = Field(None, description="Path to a user taxonomy (YAML/JSON/CSV); null = generate.")
    n_fields: int = Field(2, ge=1)
    n_subfields: int = Field(2, ge=1, description="Sub-fields per field.")
    n_disciplines: int = Field(2, ge=1, description="Disciplines per sub-field.")
    review_file: str | None = Field(None, description="Saved review to apply; null = accept all nodes.")
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(512, ge=16)
    remote_max_tokens: int = Field(2048, ge=16, description=REMOTE_HELP)
    length_retry_max_tokens: int = Field(4096, ge=16, description=RETRY_HELP)


class SubjectSettings(Section):
    """Paper §2.2: 10 rounds per discipline at T=1.0, top-p 0.95, merged."""

    rounds: int = Field(10, ge=1)
    per_round: int = Field(10, ge=1, description="Subjects asked for per round.")
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(1024, ge=16)
    merge_threshold: float = Field(
        0.80,
        ge=0,
        le=1,
        description="Similarity at which subjects of one level merge: embedding cosine of the filler-free names "
        "(chosen on tests/data/course_pairs.csv), or word overlap when merge_by_embedding is off.",
    )
    max_subjects: int | None = Field(None, ge=1, description="Cap per discipline after merging (demo sizes).")
    remote_per_round: int = Field(40, ge=1, description="Subjects asked for per round on a remote endpoint.")
    remote_max_tokens: int = Field(6144, ge=16, description=REMOTE_HELP)
    length_retry_max_tokens: int = Field(12288, ge=16, description=RETRY_HELP)
    focuses: list[str] = Field(
        default_factory=lambda: list(SUBJECT_FOCUSES), description="Round r asks for focus r mod len(focuses)."
    )
    levels: list[str] = Field(default_factory=lambda: list(SUBJECT_LEVELS), description="The allowed `level`s.")
    merge_by_embedding: bool = Field(
        True, description="Merge by sentence-embedding cosine (all-MiniLM-L6-v2) instead of word overlap."
    )
    structure: Structure = Field("schema", description=STRUCTURE_HELP)


class SyllabiSettings(Section):
    """Paper §2.3: one call per subject, 10-30 class sessions with ~5 key concepts each."""

    min_sessions: int = Field(10, ge=1)
    max_sessions: int = Field(30, ge=1)
    concepts_per_session: int = Field(5, ge=1)
    temperature: float = Field(1.0, ge=0, le=2, description="Paper: 1.0.")
    max_tokens: int = Field(4096, ge=16)
    top_p: float = Field(0.95, gt=0, le=1, description="Paper: 0.95.")
    remote_max_tokens: int = Field(8192, ge=16, description=REMOTE_HELP)
    length_retry_max_tokens: int = Field(16384, ge=16, description=RETRY_HELP)
    structure: Structure = Field("schema", description=STRUCTURE_HELP)


class QuestionSettings(Section):
    """Paper §2.4: basic (1 session, 1-5 concepts) and challenging (2 sessions, 2-5 concepts) questions."""

    questions_per_syllabus: int = Field(10, ge=1)
    challenging_ratio: float = Field(0.5, ge=0, le=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(512, ge=16)
    max_chars: int = Field(1500, ge=100, description="Longest question kept from the embedded model.")
    remote_max_tokens: int = Field(2048, ge=16, description=REMOTE_HELP)
    length_retry_max_tokens: int = Field(4096, ge=16, description=RETRY_HELP)
    remote_max_chars: int = Field(8000, ge=100, description="Longest question kept from a remote endpoint.")
    question_types: list[str] = Field(
        default_factory=lambda: list(QUESTION_TYPES), description="One drawn per question (remote endpoints)."
    )
    embedded_question_types: list[str] = Field(
        default_factory=lambda: ["short problem", "explain and apply"],
        description="The simple list the small embedded model is given.",
    )


class AnswerSettings(Section):
    """Paper §2.5: a separate call answers each question (GPT-3.5-turbo at T=0.7)."""

    model: str | None = Field(None, description="Answer model; null = the generation model.")
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(1024, ge=16)
    top_p: float = Field(0.95, gt=0, le=1, description="Paper: 0.95.")
    remote_max_tokens: int = Field(4096, ge=16, description=REMOTE_HELP)
    length_retry_max_tokens: int = Field(8192, ge=16, description=RETRY_HELP)
