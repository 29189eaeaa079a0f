"""Settings: one YAML file, `GLAN_*` environment overrides and notebook/CLI parameters map onto one pydantic model.

One precedence everywhere (notebooks, `glan run`, `glan estimate`, sweeps): defaults < settings file < `GLAN_*`
environment < explicit parameters. A file may nest sections or use dotted keys (`subjects.rounds: 7`), so one
file serves as `--config` and as `--params`. Paths in a file (`output_dir`, `taxonomy.source`, ...) are relative to
that file, so a settings file means the same wherever the command or the kernel runs (JupyterLab starts kernels in
notebooks/). Only an `output_dir` that no layer sets depends on where it runs: `outputs/` there, or the repository's
`outputs/` from its notebooks/ folder, so interactive and batch runs share one.
Unknown keys and wrong types are errors naming the key, so a typo never silently falls back to a default. Every
section lives in a sibling module of this package, which imports nothing above `core`: loading settings stays
light (no numpy, torch or lm-eval).
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import Field, ValidationError, model_validator

from glan_utils.core.errors import ConfigError
from glan_utils.core.paths import CACHE
from glan_utils.core.section import Section
from glan_utils.core.yaml_files import read_yaml
from glan_utils.settings.data import DatasetSettings
from glan_utils.settings.evaluation import EvalSettings
from glan_utils.settings.llm import EmbeddedSettings, EndpointKind, LLMSettings, endpoint_kind
from glan_utils.settings.scale import BatchSettings, ScaleSettings
from glan_utils.settings.stages import (
    ENDPOINT_DEFAULTS,
    AnswerSettings,
    FollowupSettings,
    QualitySettings,
    QuestionSettings,
    SubjectSettings,
    SyllabiSettings,
    TaxonomySettings,
)
from glan_utils.settings.train import FinetuneSettings

ENV_PREFIX = "GLAN_"
# Settings holding a path, resolved against the folder of the settings file that sets them.
FILE_RELATIVE = ("output_dir", "llm.cache_path", "taxonomy.source", "taxonomy.review_file")
DEFAULT_OUTPUT_DIR = "outputs"


class Settings(Section):
    """Everything a run needs. Build with `load_settings`, never by hand-merging dicts."""

    run_name: str = Field("demo", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    output_dir: str = Field(
        DEFAULT_OUTPUT_DIR,
        description="Runs go to <output_dir>/<run_name>/; relative to the settings file that sets it, else to the "
        "current folder (from a repository's notebooks/ folder: the repository's outputs/).",
    )
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
    quality: QualitySettings = Field(default_factory=QualitySettings)
    followups: FollowupSettings = Field(default_factory=FollowupSettings)
    dataset: DatasetSettings = Field(default_factory=DatasetSettings)
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)
    evaluation: EvalSettings = Field(default_factory=EvalSettings)

    @model_validator(mode="after")
    def _endpoint_defaults(self) -> Self:
        """Fill what no layer set from the endpoint profile, once: the printed settings are the values sent."""
        for dotted, value in ENDPOINT_DEFAULTS[self.endpoint].items():
            section, leaf = dotted.split(".")
            if getattr(getattr(self, section), leaf) is None:
                setattr(getattr(self, section), leaf, copy.deepcopy(value))
        return self

    @property
    def endpoint(self) -> EndpointKind:
        """The endpoint profile of this run: 'embedded' (llama.cpp) or 'remote'."""
        return endpoint_kind(self.llm)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.run_name

    @property
    def cache_file(self) -> Path:
        """The response cache: shared by every run under the same output_dir unless `llm.cache_path` is set."""
        return Path(self.llm.cache_path) if self.llm.cache_path else Path(self.output_dir) / CACHE

    def snapshot(self) -> dict[str, Any]:
        """A plain dict for `config.yaml`: contains no secret, since keys are never settings."""
        return self.model_dump(mode="json")


def set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
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
            set_dotted(out, dotted, yaml.safe_load(raw) if raw else raw)
    return out


def _section_fields(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the section that `loc` (a key path minus its leaf) points into; [] if it is not one."""
    model: Any = Settings
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        model = field.annotation if field else None
        if not isinstance(model, type) or not issubclass(model, Section):
            return []
    return list(model.model_fields)


def _suggestion(loc: tuple[Any, ...]) -> str:
    """' (did you mean x.y?)' with the closest key of the same section, or '' when none is close."""
    leaf, parents = str(loc[-1]), loc[:-1]
    close = difflib.get_close_matches(leaf, _section_fields(parents), n=1, cutoff=0.6)
    return f" (did you mean {'.'.join([*map(str, parents), close[0]])}?)" if close else ""


def _in_file(data: dict[str, Any], loc: tuple[Any, ...]) -> bool:
    node: Any = data
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _describe(error: ValidationError, path: str | Path | None = None, file_data: dict[str, Any] | None = None) -> str:
    """One line: the key, what is wrong, the closest known key for a typo, and the file when the key is in it."""
    first = error.errors()[0]
    loc = tuple(first["loc"])
    key = ".".join(str(p) for p in loc) or "<root>"
    unknown = first["type"] == "extra_forbidden"
    msg = f"unknown key{_suggestion(loc)}" if unknown and loc else first["msg"]
    more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
    where = f" in {path}" if path is not None and loc and _in_file(file_data or {}, loc) else ""
    return f"config error{where}: {key}: {msg}{more}"


def load_settings(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Merge defaults < file < environment < overrides (dotted keys like 'llm.model') and validate once.

    Raises ConfigError with one line naming the offending key.
    """
    data = read_settings_file(path) if path is not None else {}
    file_data = copy.deepcopy(data)  # the overrides below must not count as "in the file"
    for dotted, value in _flatten(_env_overrides(dict(os.environ if environ is None else environ))).items():
        set_dotted(data, dotted, value)
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    data.setdefault("output_dir", default_output_dir())
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, file_data)) from None


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """A settings file as a nested mapping: dotted keys expanded, its relative paths made relative to it."""
    path = Path(path)
    loaded = read_yaml(path, "settings file")
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"config error: {path}: top level must be a mapping")
    data: dict[str, Any] = {}
    for key, value in (loaded or {}).items():  # only top-level keys are dotted paths; model names keep their dots
        _merge(data, str(key).split("."), value)
    for dotted in FILE_RELATIVE:
        value = get_dotted(data, dotted)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            set_dotted(data, dotted, str((path.parent / value).resolve()))
    return data


def get_dotted(tree: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted key of a nested mapping, None when absent."""
    node: Any = tree
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def default_output_dir(cwd: Path | None = None) -> str:
    """`outputs` where the command runs; the repository's `outputs/` when a kernel runs in its `notebooks/`."""
    here = cwd or Path.cwd()
    if here.name == "notebooks" and (here.parent / "glan_utils").is_dir():
        return str(here.parent / DEFAULT_OUTPUT_DIR)
    return DEFAULT_OUTPUT_DIR


def _merge(target: dict[str, Any], keys: list[str], value: Any) -> None:
    """Set `value` at `keys`, merging mappings key by key so nested and dotted forms of a section combine."""
    *parents, leaf = keys
    for part in parents:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"config error: {'.'.join(keys)}: '{part}' is not a section")
    if isinstance(value, dict) and isinstance(target.get(leaf), dict):
        for key, item in value.items():
            _merge(target[leaf], [str(key)], item)
    else:
        target[leaf] = value


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}, 'c.d': 2} -> {'a.b': 1, 'c.d': 2}; an empty mapping stays a value."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat
