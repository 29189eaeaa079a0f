"""Settings of the generation stages, one section per stage, named as the stage is (taxonomy ... answers).

The defaults are the demo's sizes (`configs/demo.yaml`: a minutes-long run on the embedded model), so a notebook
opened without a settings file never starts a paper-scale run by accident; `configs/paper.yaml` holds the paper's
sizes. Sampling settings (temperatures, top-p) default to the paper's values. Every integer has an upper bound,
so a typo such as `questions_per_syllabus: 99999999999999999999999` is one clear error, not a plan. What depends on
the endpoint (output budgets, subjects per round, question length and types) defaults per endpoint profile
(`ENDPOINT_DEFAULTS`: tight for the embedded 135M model, which loops at high temperature; larger for a remote
endpoint, where a cut reply gets one retry with a larger budget). `Settings` fills what no layer set from its
profile once, when it is validated, so the printed settings are the values sent, and a value the user sets is the
value sent on any endpoint.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from glan_utils.core.section import Section
from glan_utils.settings.llm import EndpointKind

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
    "advanced undergraduate courses",
    "graduate courses and research methods",
    "professional, vocational and applied courses used in industry and practice",
    "interdisciplinary courses that connect it with other disciplines",
    "methods, tools, laboratory, studio or field courses",
    "the history, theory and ethics of the discipline",
    "regional, cultural and international perspectives and applied practice",
    "emerging topics and current developments",
)
"""Ten distinct round focuses: the paper's 10 rounds each ask for a different part of the curriculum."""
QUESTION_TYPES = (
    "worked numeric problem",
    "derivation or proof",
    "code with tests",
    "case analysis",
    "compare and contrast",
    "multi-part problem",
    "short essay with stated criteria",
)

_T = dict(zip(QUESTION_TYPES, ("numeric", "proof", "code", "case", "compare", "multi", "essay"), strict=True))
TYPE_WEIGHTS: dict[str, dict[str, float]] = {
    name: {kind: weights[short] for kind, short in _T.items()}
    for name, weights in {
        "Humanities": dict(numeric=0.25, proof=0.5, code=0, case=2, compare=2, multi=1, essay=2),
        "Social sciences": dict(numeric=1, proof=0.5, code=0.25, case=2, compare=1.5, multi=1, essay=1.5),
        "Natural sciences": dict(numeric=2, proof=1.5, code=0.5, case=1, compare=1, multi=1.5, essay=0.5),
        "Formal sciences": dict(numeric=1.5, proof=2, code=1.5, case=0.5, compare=0.5, multi=1.5, essay=0.25),
        "Applied sciences": dict(numeric=1.5, proof=1, code=0.5, case=1.5, compare=1, multi=1.5, essay=0.5),
        "Industry, services and agriculture": dict(
            numeric=1.5, proof=0.25, code=0.25, case=2, compare=1, multi=1.5, essay=0.75
        ),
        "Computing and systems": dict(numeric=1, proof=1, code=3, case=1, compare=0.5, multi=1.5, essay=0.25),
    }.items()
}
"""Default question-type weights per taxonomy node name (the paper's six fields; computing gets more code): no code
in the humanities, few essays in formal sciences. A name not listed weighs every type 1."""

FOLLOWUP_KINDS = ("step", "why", "variant", "check_attempt", "connect")
"""Follow-up kinds: ask about a step, ask why, a variant with changed givens, "check my attempt" (with a planted
mistake), connect to a later session's concept. `prompts/followups.jinja` phrases each."""

EMBEDDED_QUESTION_TYPES = ("short problem", "explain and apply")
PROFILE_HELP = "Unset: the endpoint profile's default (ENDPOINT_DEFAULTS; shown in the printed settings)."
RETRY_HELP = "Remote endpoints: cap of the one retry after finish_reason=length (twice the budget, at most this)."
TOKENS = {"ge": 16, "le": 1_000_000}


class TaxonomySettings(Section):
    """Paper §2.1: fields -> sub-fields -> disciplines, generated or supplied by the user (paper: 126 disciplines)."""

    source: str | None = Field(
        None,
        description="Path to a user taxonomy (YAML/JSON/CSV); null = generate. Relative to the settings file "
        "that names it.",
    )
    n_fields: int = Field(2, ge=1, le=100)
    n_subfields: int = Field(1, ge=1, le=100, description="Sub-fields per field.")
    n_disciplines: int = Field(2, ge=1, le=100, description="Disciplines per sub-field.")
    max_name_chars: int = Field(
        200, ge=1, le=10_000, description="Longest node name accepted from a file or a review (longer: an error)."
    )
    review_file: str | None = Field(None, description="Saved review to apply; null = accept all nodes.")
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int | None = Field(None, **TOKENS, description=PROFILE_HELP)
    length_retry_max_tokens: int = Field(4096, **TOKENS, description=RETRY_HELP)


class SubjectSettings(Section):
    """Paper §2.2: 10 rounds per discipline at T=1.0, top-p 0.95, merged (100-200 subjects per discipline)."""

    rounds: int = Field(2, ge=1, le=100, description="Sampling rounds per discipline (paper: 10).")
    per_round: int | None = Field(None, ge=1, le=1_000, description="Subjects asked for per round. " + PROFILE_HELP)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int | None = Field(None, **TOKENS, description=PROFILE_HELP)
    merge_threshold: float = Field(
        0.80,
        ge=0,
        le=1,
        description="Similarity at which subjects of one level merge: embedding cosine of the filler-free names "
        "(chosen on tests/data/course_pairs.csv), or word overlap when merge_by_embedding is off.",
    )
    max_subjects: int | None = Field(
        3, ge=1, le=100_000, description="Cap per discipline after merging (paper: ~150); null = no cap."
    )
    length_retry_max_tokens: int = Field(12288, **TOKENS, description=RETRY_HELP)
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

    min_sessions: int = Field(3, ge=1, le=200, description="Paper: 10.")
    max_sessions: int = Field(5, ge=1, le=200, description="Paper: 30.")
    concepts_per_session: int = Field(3, ge=1, le=50, description="Paper: ~5.")
    temperature: float = Field(1.0, ge=0, le=2, description="Paper: 1.0.")
    top_p: float = Field(0.95, gt=0, le=1, description="Paper: 0.95.")
    max_tokens: int | None = Field(None, **TOKENS, description=PROFILE_HELP)
    length_retry_max_tokens: int = Field(16384, **TOKENS, description=RETRY_HELP)
    structure: Structure = Field("schema", description=STRUCTURE_HELP)

    @model_validator(mode="after")
    def _sessions_ordered(self) -> Self:
        if self.max_sessions < self.min_sessions:
            raise ValueError(f"max_sessions ({self.max_sessions}) is below min_sessions ({self.min_sessions})")
        return self


class QuestionSettings(Section):
    """Paper §2.4: basic (1 session, 1-5 concepts) and challenging (2 sessions, 2-5 concepts) questions."""

    questions_per_syllabus: int = Field(
        2, ge=1, le=100_000, description="Question slots per syllabus (paper scale: ~540 for 10M pairs)."
    )
    challenging_ratio: float = Field(0.5, ge=0, le=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int | None = Field(None, **TOKENS, description=PROFILE_HELP)
    max_chars: int | None = Field(None, ge=100, le=1_000_000, description="Longest question kept. " + PROFILE_HELP)
    length_retry_max_tokens: int = Field(4096, **TOKENS, description=RETRY_HELP)
    question_types: list[str] | None = Field(
        None,
        min_length=1,
        description="One drawn per question (the embedded model gets a short, simple list). " + PROFILE_HELP,
    )
    type_weights: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {name: dict(weights) for name, weights in TYPE_WEIGHTS.items()},
        description="Per field, sub-field or discipline name: the weight of each question type in its draw. The "
        "discipline's entry wins, then its sub-field's, then its field's; a type no entry names weighs 1; a type "
        "of weight 0 is never drawn there (unless every type is 0). Entries given are added to the defaults "
        "(TYPE_WEIGHTS), replacing one of the same name: {Dance: {code with tests: 1}} asks for code in Dance.",
    )

    @field_validator("type_weights", mode="before")
    @classmethod
    def _over_defaults(cls, value: Any) -> Any:
        return {**TYPE_WEIGHTS, **value} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _weights_not_negative(self) -> Self:
        bad = [f"{name}: {kind}" for name, weights in self.type_weights.items() for kind, w in weights.items() if w < 0]
        if bad:
            raise ValueError(f"type_weights must not be negative: {bad}")
        return self


class AnswerSettings(Section):
    """Paper §2.5: a separate call answers each question (GPT-3.5-turbo at T=0.7)."""

    model: str | None = Field(None, description="Answer model; null = the generation model.")
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1, description="Paper: 0.95.")
    max_tokens: int | None = Field(None, **TOKENS, description=PROFILE_HELP)
    length_retry_max_tokens: int = Field(8192, **TOKENS, description=RETRY_HELP)


class QualitySettings(Section):
    """After answers: an LLM judge scores each QA pair on a rubric; closed final answers get a second answer.

    Not in the paper (GLAN keeps every deduplicated, decontaminated pair); a documented addition of this workbench.
    """

    enabled: bool = Field(True, description="Judge the pairs; false = skip the stage (as the paper does).")
    model: str | None = Field(None, description="Judge model; null = the answer model (else the generation model).")
    base_url: str | None = Field(None, description="Judge endpoint; null = the run's endpoint (llm.base_url).")
    temperature: float = Field(0.0, ge=0, le=2, description="Judge sampling temperature (0 = most repeatable).")
    max_tokens: int = Field(256, **TOKENS, description="Scores and a short rationale fit in 256 tokens.")
    verify: bool = Field(True, description="Answer closed (numeric/symbolic) questions a second time and compare.")
    verifier_model: str | None = Field(None, description="Model of the second answer; null = the answer model.")
    verifier_seed: int = Field(1, ge=1, description="Sample index of the second answer (the first answer is 0).")
    verifier_max_tokens: int = Field(1024, **TOKENS)


class FollowupSettings(Section):
    """After quality (not in the paper): `turns` follow-up rounds per QA pair, each a student turn of a drawn kind
    and the tutor's reply, grounded in the pair's syllabus. `configs/paper.yaml` turns it off (`turns: 0`)."""

    turns: int = Field(1, ge=0, le=20, description="Follow-up rounds per pair (student turn + tutor reply); 0 = off.")
    kinds: list[str] = Field(
        default_factory=lambda: list(FOLLOWUP_KINDS),
        min_length=1,
        description=f"Kinds a student turn is drawn from, seeded by (seed, pair, turn); any of {FOLLOWUP_KINDS}.",
    )
    model: str | None = Field(None, description="Model of both turns; null = the answer model (else the run's).")
    student_temperature: float = Field(1.0, ge=0, le=2, description="Sampling temperature of the student turn.")
    student_max_tokens: int = Field(384, **TOKENS, description="Budget of the student turn (bounded JSON).")
    temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature of the tutor's reply.")
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int | None = Field(None, **TOKENS, description="Budget of the tutor's reply. " + PROFILE_HELP)
    judge: bool = Field(
        False,
        description="Judge each round on the conversation rubric (does the reply answer this follow-up, stay "
        "consistent with the earlier answers, catch the planted mistake): one more call per round, to the quality "
        "judge's model at its temperature and budget.",
    )
    length_retry_max_tokens: int = Field(8192, **TOKENS, description=RETRY_HELP)

    @model_validator(mode="after")
    def _known_kinds(self) -> Self:
        unknown = sorted(set(self.kinds) - set(FOLLOWUP_KINDS))
        if unknown:
            raise ValueError(f"unknown follow-up kinds {unknown}; known: {list(FOLLOWUP_KINDS)}")
        return self


# The defaults that depend on the endpoint, per profile (`settings.llm.endpoint_kind`); a third kind of endpoint (a
# vLLM pool, a native API) is one more entry here.
ENDPOINT_DEFAULTS: dict[EndpointKind, dict[str, Any]] = {
    "embedded": {
        "taxonomy.max_tokens": 512,
        "subjects.per_round": 3,
        "subjects.max_tokens": 1024,
        "syllabi.max_tokens": 4096,
        "questions.max_tokens": 512,
        "questions.max_chars": 1500,
        "questions.question_types": list(EMBEDDED_QUESTION_TYPES),
        "answers.max_tokens": 1024,
        "followups.max_tokens": 512,
    },
    "remote": {
        "taxonomy.max_tokens": 2048,
        "subjects.per_round": 40,
        "subjects.max_tokens": 6144,
        "syllabi.max_tokens": 8192,
        "questions.max_tokens": 2048,
        "questions.max_chars": 8000,
        "questions.question_types": list(QUESTION_TYPES),
        "answers.max_tokens": 4096,
        "followups.max_tokens": 4096,
    },
}
