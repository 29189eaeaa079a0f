"""Parameter sweeps: several runs from one YAML file (a list and/or a grid), and a table comparing them.

Sweep file (every part optional, at least one run)::

    params: {subjects.rounds: 2}          # shared by every run
    runs:                                 # explicit runs; `name` gives the run `<base>-<name>`
      - {name: smol, params: {llm.model: smollm2}}
    grid:                                 # cartesian product
      llm.model: [a, b]
      subjects.temperature: [0.7, 1.0]

A top-level list is shorthand for `runs` whose items are parameter mappings. A run without a `name` is named by
the values it sets, each as the key's last part and the value: `<base>-model_a-temperature_0.7`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from glan_utils.app.summary import run_table, run_totals
from glan_utils.core.errors import ConfigError
from glan_utils.core.yaml_files import read_yaml

_KEYS = {"params", "runs", "grid"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
NAME_MAX = 80


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its name and the parameters that differ from the base invocation."""

    name: str
    params: dict[str, Any]


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"sweep file: {where} must be a mapping of parameter: value")
    return value


def _explicit_runs(items: Any) -> list[tuple[str | None, dict[str, Any]]]:
    if not isinstance(items, list):
        raise ConfigError("sweep file: 'runs' must be a list")
    out = []
    for i, item in enumerate(items, 1):
        item = _mapping(item, f"runs[{i}]")
        if set(item) <= {"name", "params"} and "params" in item:
            out.append((item.get("name"), _mapping(item["params"], f"runs[{i}].params")))
        else:
            out.append((None, item))
    return out


def _grid_runs(grid: Any) -> list[tuple[str | None, dict[str, Any]]]:
    grid = _mapping(grid, "grid")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep file: grid.{key} must be a non-empty list of values")
    return [(None, dict(zip(grid, combo, strict=True))) for combo in itertools.product(*grid.values())]


def value_name(params: dict[str, Any]) -> str:
    """A run name from the values a run sets: `{subjects.rounds: 2, seed: 7}` -> 'rounds_2-seed_7'."""
    parts = [f"{key.split('.')[-1]}_{value}" for key, value in params.items()]
    return _UNSAFE.sub("-", "-".join(parts)).strip("-.")[:NAME_MAX]


def load_sweep(path: str | Path, base_name: str) -> list[SweepRun]:
    """Parse a sweep file into named runs `<base_name>-<name or i>`."""
    spec = read_yaml(path, "sweep file")
    if isinstance(spec, list):
        spec = {"runs": spec}
    spec = _mapping(spec, "the top level")
    if unknown := set(spec) - _KEYS:
        names = ", ".join(sorted(unknown))
        raise ConfigError(f"sweep file: unknown key(s) {names}; expected params, runs, grid")
    common = _mapping(spec.get("params"), "params")
    found = _explicit_runs(spec.get("runs", [])) + (_grid_runs(spec["grid"]) if "grid" in spec else [])
    if not found:
        raise ConfigError(f"sweep file defines no runs: {path}")
    runs = [
        SweepRun(f"{base_name}-{name or value_name(params) or i}", {**common, **params})
        for i, (name, params) in enumerate(found, 1)
    ]
    if len({r.name for r in runs}) != len(runs):
        raise ConfigError("sweep file: run names must be unique")
    return runs


def _cached(totals: dict[str, Any]) -> str:
    """'all' when every call came from the response cache (so cost 0 means nothing was asked), else 'some'/'none'."""
    calls, hits = totals["calls"], totals["cache_hits"]
    return "all" if calls and hits == calls else "some" if hits else "none"


def comparison(
    runs: list[SweepRun], output_dir: Path, errors: dict[str, str], seconds: dict[str, float] | None = None
) -> pd.DataFrame:
    """One row per run: its parameters, outcome, wall time, records per generation stage, calls, whether they
    were answered from the cache, failures and cost."""
    rows = []
    for run in runs:
        run_dir = output_dir / run.name
        row: dict[str, Any] = {"run": run.name, **run.params, "outcome": errors.get(run.name, "ok")}
        if seconds and run.name in seconds:
            row["wall_s"] = round(seconds[run.name], 1)
        if run_dir.is_dir():
            table = run_table(run_dir)
            stages = table[table["records"].notna()]
            counts = zip(stages["stage"], stages["records"], strict=True)
            row.update({f"{stage}_records": int(n) for stage, n in counts})
            row["failed_records"] = int(table["failed"].fillna(0).sum())
            totals = run_totals(run_dir)
            row.update(totals, cached=_cached(totals))
        rows.append(row)
    return pd.DataFrame(rows)
