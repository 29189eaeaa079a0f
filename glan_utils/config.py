"""Settings: one YAML file, `GLAN_*` environment overrides and notebook/CLI parameters map onto one pydantic model.

Unknown keys and wrong types are errors naming the key, so a typo never silently falls back to a default. The API
key is never a setting: only the *name* of the environment variable holding it is, so snapshots can't leak it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from glan_utils.dataset_settings import DatasetSettings
from glan_utils.errors import ConfigError
from glan_utils.evaluate import EvalSettings
from glan_utils.finetune_presets import FinetuneSettings
from glan_utils.section import Section

ENV_PREFIX = "GLAN_"


class Price(Section):
    """US dollars per million tokens."""

    input_per_1m: float = Field(0.0, ge=0)
    output_per_1m: float = Field(0.0, ge=0)


class LLMSettings(Section):
    """Where and how to call the model. `base_url: null` means the embedded local llama.cpp server."""

    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1.")
    base_urls: list[str] = Field(default_factory=list, description="Several replicas serving the same model (e.g. "
                                 "vLLM on N GPUs): each call goes to the least busy; overrides base_url.")
    model: str | None = Field(None, description="Model name sent to the endpoint (embedded: set automatically).")
    api_key_env: str = Field("OPENAI_API_KEY", description="Name of the environment variable holding the key.")
    concurrency: int = Field(16, ge=1, le=4096, description="Requests in flight at once.")
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(6, ge=0, description="Retries per call on 429/5xx/timeouts before recording a failure.")
    retry_max_wait_s: float = Field(60.0, gt=0)
    structured_output: Literal["json_schema", "json_object", "none"] = "json_schema"
    extra_body: dict[str, Any] = Field(default_factory=dict, description="Extra request fields, e.g. repeat_penalty.")
    cache_path: str | None = Field(None, description="Response cache shared by runs; None = <output_dir>/cache.sqlite.")
    prices: dict[str, Price] = Field(default_factory=dict, description="Price table keyed by model name.")


class EmbeddedSettings(Section):
    """The local llama.cpp server used when no endpoint is configured."""

    model: str = Field("smollm2", description="'smollm2' or a path to a .gguf file.")
    ctx: int = Field(8192, ge=512)
    parallel: int = Field(4, ge=1)
    threads: int = Field(2, ge=1)
    extra_body: dict[str, Any] = Field(default_factory=lambda: {"repeat_penalty": 1.1},
                                       description="Sampling extras for llama.cpp (a small model loops without).")


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


class SyllabusSettings(Section):
    """Paper §2.3: one call per subject, 10-30 class sessions with ~5 key concepts each."""

    min_sessions: int = Field(10, ge=1)
    max_sessions: int = Field(30, ge=1)
    concepts_per_session: int = Field(5, ge=1)
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(4096, ge=16)


class HomeworkSettings(Section):
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


class Settings(Section):
    """Everything a run needs. Build with `load_settings`, never by hand-merging dicts."""

    run_name: str = Field("demo", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    output_dir: str = "outputs"
    seed: int = 0
    language: str = Field("English", min_length=1)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    embedded: EmbeddedSettings = Field(default_factory=EmbeddedSettings)
    taxonomy: TaxonomySettings = Field(default_factory=TaxonomySettings)
    subjects: SubjectSettings = Field(default_factory=SubjectSettings)
    syllabus: SyllabusSettings = Field(default_factory=SyllabusSettings)
    homework: HomeworkSettings = Field(default_factory=HomeworkSettings)
    answers: AnswerSettings = Field(default_factory=AnswerSettings)
    dataset: DatasetSettings = Field(default_factory=DatasetSettings)
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)
    evaluation: EvalSettings = Field(default_factory=EvalSettings)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.run_name

    @property
    def cache_file(self) -> Path:
        """The response cache: shared by every run under the same output_dir unless `llm.cache_path` is set."""
        return Path(self.llm.cache_path) if self.llm.cache_path else Path(self.output_dir) / "cache.sqlite"

    def snapshot(self) -> dict[str, Any]:
        """A plain dict for `config.yaml`: contains no secret, since keys are never settings."""
        return self.model_dump(mode="json")


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    node = target
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config error: {dotted}: '{part}' is not a section")
        node = child
    node[leaf] = value


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """`GLAN_LLM__MODEL=x` -> {'llm': {'model': 'x'}}; values are parsed as YAML scalars (numbers, null, bools)."""
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if (name.startswith(ENV_PREFIX) and "__" in name) or name in {"GLAN_RUN_NAME", "GLAN_SEED", "GLAN_LANGUAGE"}:
            dotted = name[len(ENV_PREFIX):].lower().replace("__", ".")
            _set_dotted(out, dotted, yaml.safe_load(raw) if raw else raw)
    return out


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "<root>"
    msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
    more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"config error: {key}: {msg}{more}"


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                  environ: dict[str, str] | None = None) -> Settings:
    """Merge file < environment < overrides (dotted keys like 'llm.model') and validate once.

    Raises ConfigError with one line naming the offending key.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config error: file not found: {path}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"config error: {path}{where}: not valid YAML") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config error: {path}: top level must be a mapping")
        data = loaded or {}
    for dotted, value in _flatten(_env_overrides(dict(os.environ if environ is None else environ))).items():
        _set_dotted(data, dotted, value)
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def api_key(settings: LLMSettings) -> str | None:
    """The key from the environment only; never stored on the settings object."""
    return os.environ.get(settings.api_key_env) or None
