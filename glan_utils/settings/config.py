"""Settings: one YAML file, `GLAN_*` environment overrides and notebook/CLI parameters map onto one pydantic model.

Unknown keys and wrong types are errors naming the key, so a typo never silently falls back to a default. Every
section lives in a sibling module of this package, which imports nothing above `core`: loading settings stays
light (no numpy, torch or lm-eval).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from glan_utils.core.errors import ConfigError
from glan_utils.core.section import Section
from glan_utils.settings.data import DatasetSettings
from glan_utils.settings.evaluation import EvalSettings
from glan_utils.settings.llm import EmbeddedSettings, LLMSettings
from glan_utils.settings.scale import BatchSettings, ScaleSettings
from glan_utils.settings.stages import (
    AnswerSettings,
    QuestionSettings,
    SubjectSettings,
    SyllabiSettings,
    TaxonomySettings,
)
from glan_utils.settings.train import FinetuneSettings

ENV_PREFIX = "GLAN_"


class Settings(Section):
    """Everything a run needs. Build with `load_settings`, never by hand-merging dicts."""

    run_name: str = Field("demo", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    output_dir: str = "outputs"
    seed: int = 0
    language: str = Field("English", min_length=1)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    embedded: EmbeddedSettings = Field(default_factory=EmbeddedSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    scale: ScaleSettings = Field(default_factory=ScaleSettings)
    taxonomy: TaxonomySettings = Field(default_factory=TaxonomySettings)
    subjects: SubjectSettings = Field(default_factory=SubjectSettings)
    syllabi: SyllabiSettings = Field(default_factory=SyllabiSettings)
    questions: QuestionSettings = Field(default_factory=QuestionSettings)
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
            dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".")
            _set_dotted(out, dotted, yaml.safe_load(raw) if raw else raw)
    return out


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "<root>"
    msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
    more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"config error: {key}: {msg}{more}"


def load_settings(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None
) -> Settings:
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
