"""The numbered notebooks' parameters, declared once, and the one derivation of the settings they run with.

`PARAMETERS` maps each notebook's parameter names to the dotted settings keys they set (`rounds` ->
`subjects.rounds`); `OWN_PARAMETERS` lists the names a notebook reads itself, with the defaults its parameters cell
declares. The notebooks' settings cell (`notebook_settings("02_subjects", globals())`), `glan run`, `glan estimate`,
preflight and sweeps all derive settings through `derive_settings` with this map, so they cannot disagree;
`tests/test_settings_paths.py` checks every path against the others and every parameters cell against this map. A
name keeps one meaning inside a notebook; across notebooks (`temperature` is a different stage's in 01-04) the CLI
refuses it and names the dotted keys to use.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from glan_utils.core.errors import ConfigError, one_line_in_notebooks
from glan_utils.core.stale import stale_stages
from glan_utils.settings.config import Settings, load_settings
from glan_utils.settings.stages import ENDPOINT_DEFAULTS

SHARED = {"run_name": "run_name", "output_dir": "output_dir"}
GENERATION = {**SHARED, "seed": "seed", "language": "language", "base_url": "llm.base_url", "model": "llm.model"}

PARAMETERS: dict[str, dict[str, str]] = {
    "01_taxonomy": {
        **GENERATION,
        "taxonomy_file": "taxonomy.source",
        "n_fields": "taxonomy.n_fields",
        "n_subfields": "taxonomy.n_subfields",
        "n_disciplines": "taxonomy.n_disciplines",
        "temperature": "taxonomy.temperature",
        "review_file": "taxonomy.review_file",
    },
    "02_subjects": {
        **GENERATION,
        "rounds": "subjects.rounds",
        "per_round": "subjects.per_round",
        "temperature": "subjects.temperature",
        "top_p": "subjects.top_p",
        "merge_threshold": "subjects.merge_threshold",
        "max_subjects": "subjects.max_subjects",
    },
    "03_syllabi": {
        **GENERATION,
        "min_sessions": "syllabi.min_sessions",
        "max_sessions": "syllabi.max_sessions",
        "concepts_per_session": "syllabi.concepts_per_session",
        "temperature": "syllabi.temperature",
    },
    "04_questions": {
        **GENERATION,
        "questions_per_syllabus": "questions.questions_per_syllabus",
        "challenging_ratio": "questions.challenging_ratio",
        "temperature": "questions.temperature",
        "answer_model": "answers.model",
        "answer_temperature": "answers.temperature",
    },
    "05_dataset": {
        **SHARED,
        "near_threshold": "dataset.dedup.threshold",
        "shingle_size": "dataset.dedup.shingle_size",
        "num_perm": "dataset.dedup.num_perm",
        "ngram": "dataset.decontamination.ngram",
        "min_matches": "dataset.decontamination.min_matches",
        "benchmarks": "dataset.decontamination.benchmarks",
        "test_per_discipline": "dataset.export.test_per_discipline",
        "test_fraction": "dataset.export.test_fraction",
        "workers": "dataset.decontamination.workers",
    },
    "06_finetune": {
        **SHARED,
        "preset": "finetune.preset",
        "base_model": "finetune.model",
        "max_steps": "finetune.max_steps",
        "max_train_examples": "finetune.max_train_examples",
        "learning_rate": "finetune.learning_rate",
    },
    "07_evaluation": {
        **SHARED,
        "benchmarks": "evaluation.benchmarks",
        "limit": "evaluation.limit",
        "max_gen_toks": "evaluation.max_gen_toks",
        "glan_test_limit": "evaluation.judge_limit",
        "loss_gap_limit": "evaluation.loss_gap_limit",
    },
}
# Every notebook takes a settings file and any other settings as dotted keys (`{"llm.concurrency": 8}`).
CONTROL: dict[str, Any] = {"config_path": None, "overrides": {}}
OWN_PARAMETERS: dict[str, dict[str, Any]] = {
    "01_taxonomy": {**CONTROL, "interactive": True},
    "02_subjects": CONTROL,
    "03_syllabi": CONTROL,
    "04_questions": CONTROL,
    "05_dataset": CONTROL,
    "06_finetune": {**CONTROL, "paper_examples": 10_000_000},
    "07_evaluation": {**CONTROL, "models": [{"name": "base"}], "include_tuned": True},
}


def declared(notebook: str) -> dict[str, Any] | None:
    """Every parameter of a numbered notebook with the value it has when nobody sets it (None for settings:
    the lower layers decide); None for a notebook this map does not know."""
    if notebook not in PARAMETERS:
        return None
    return {**dict.fromkeys(PARAMETERS[notebook]), **OWN_PARAMETERS[notebook]}


def derive_settings(
    config_path: str | Path | None,
    parameters: Mapping[str, Any],
    keys: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """The one derivation: defaults < settings file < `GLAN_*` environment < dotted `overrides` < the parameters
    that `keys` maps to settings (None keeps the lower layers), validated once."""
    named = {keys[name]: value for name, value in parameters.items() if name in keys and value is not None}
    return load_settings(config_path, {**dict(overrides or {}), **named}, environ)


INTERACTIVE_RUN = "scratch"
"""The run a notebook writes to when no parameter, settings file or `GLAN_RUN_NAME` names one: never the run
`make demo` made, so an experiment in JupyterLab or plain papermill cannot grow it or rewrite its settings."""


def notebook_settings(notebook: str, namespace: Mapping[str, Any]) -> Settings:
    """The settings of a numbered notebook from its parameters cell's names (`globals()` in the notebook); the
    run is `INTERACTIVE_RUN` when nothing names one. From here on the notebook shows the workbench's errors as
    one line, and a bad value names the parameter the user set."""
    one_line_in_notebooks()
    keys = PARAMETERS[notebook]
    try:
        settings = derive_settings(namespace.get("config_path"), namespace, keys, namespace.get("overrides"))
    except ConfigError as exc:
        typed = [
            f"{name} = {namespace[name]!r}"
            for name, key in keys.items()
            if namespace.get(name) is not None and f" {key}:" in str(exc)
        ]
        raise ConfigError(f"{exc} (you set {typed[0]})" if typed else str(exc)) from None
    if "run_name" not in settings.model_fields_set:
        settings = settings.model_copy(update={"run_name": INTERACTIVE_RUN})
    return settings


def describe_settings(settings: Settings, *sections: str) -> str:
    """What a notebook's stage will run with, as YAML, printed before any call: run, endpoint, the sections' values
    (as sent), and the endpoint profile's defaults for them, so a value set by hand shows beside its default."""
    snapshot = settings.snapshot()
    defaults = {k: v for k, v in ENDPOINT_DEFAULTS[settings.endpoint].items() if k.split(".")[0] in sections}
    shown = {
        "run": str(settings.run_dir),
        "model": settings.llm.model or "embedded",
        "base_url": settings.llm.base_url,
        "endpoint": settings.endpoint,
        **{name: snapshot[name] for name in sections},
        f"{settings.endpoint} defaults": defaults,
    }
    if stale := stale_stages(settings.run_dir):  # built on inputs that changed since: say so before anything runs
        shown["stale (rerun them)"] = [f"{name}: {why}" for name, why in stale.items()]
    return yaml.safe_dump(shown, sort_keys=False, allow_unicode=True).rstrip()
