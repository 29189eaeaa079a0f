"""Settings of the generation stages, one section per stage, named as the stage is (taxonomy ... answers)."""

from __future__ import annotations

from pydantic import Field

from glan_utils.core.section import Section


class TaxonomySettings(Section):
    """Paper §2.1: fields -> sub-fields -> disciplines, generated or supplied by the user."""

    source: str | None = Field(None, description="Path to a user taxonomy (YAML/JSON/CSV); null = generate.")
    n_fields: int = Field(2, ge=1)
    n_subfields: int = Field(2, ge=1, description="Sub-fields per field.")
    n_disciplines: int = Field(2, ge=1, description="Disciplines per sub-field.")
    review_file: str | None = Field(None, description="Saved review to apply; null = accept all nodes.")
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(512, ge=16)


class SubjectSettings(Section):
    """Paper §2.2: 10 rounds per discipline at T=1.0, top-p 0.95, merged."""

    rounds: int = Field(10, ge=1)
    per_round: int = Field(10, ge=1, description="Subjects asked for per round.")
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(1024, ge=16)
    merge_threshold: float = Field(0.85, ge=0, le=1, description="Name similarity at which subjects merge.")
    max_subjects: int | None = Field(None, ge=1, description="Cap per discipline after merging (demo sizes).")


class SyllabiSettings(Section):
    """Paper §2.3: one call per subject, 10-30 class sessions with ~5 key concepts each."""

    min_sessions: int = Field(10, ge=1)
    max_sessions: int = Field(30, ge=1)
    concepts_per_session: int = Field(5, ge=1)
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(4096, ge=16)


class QuestionSettings(Section):
    """Paper §2.4: basic (1 session, 1-5 concepts) and challenging (2 sessions, 2-5 concepts) questions."""

    questions_per_syllabus: int = Field(10, ge=1)
    challenging_ratio: float = Field(0.5, ge=0, le=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(512, ge=16)


class AnswerSettings(Section):
    """Paper §2.5: a separate call answers each question (GPT-3.5-turbo at T=0.7)."""

    model: str | None = Field(None, description="Answer model; null = the generation model.")
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(1024, ge=16)


class QualitySettings(Section):
    """After answers: an LLM judge scores each QA pair on a rubric; closed final answers get a second answer.

    Not in the paper (GLAN keeps every deduplicated, decontaminated pair); a documented addition of this workbench.
    """

    model: str | None = Field(None, description="Judge model; null = the answer model (else the generation model).")
    base_url: str | None = Field(None, description="Judge endpoint; null = the run's endpoint (llm.base_url).")
    temperature: float = Field(0.0, ge=0, le=2, description="Judge sampling temperature (0 = most repeatable).")
    max_tokens: int = Field(512, ge=16)
    verify: bool = Field(True, description="Answer closed (numeric/symbolic) questions a second time and compare.")
    verifier_model: str | None = Field(None, description="Model of the second answer; null = the answer model.")
    verifier_seed: int = Field(1, ge=1, description="Sample index of the second answer (the first answer is 0).")
    verifier_max_tokens: int = Field(1024, ge=16)
