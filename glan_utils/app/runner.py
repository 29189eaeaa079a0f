"""Run the numbered notebooks of a GLAN run in order with papermill, with stage selection and resume.

Command-line parameters are routed by name: a name declared in a notebook's `parameters` cell goes to the
notebooks that declare it; a settings key (`llm.concurrency`, `subjects.rounds`) goes into the `overrides`
dict parameter of notebooks that declare one (they pass it to `load_settings`), and otherwise into a settings
file written for the run (`notebooks/settings.yaml`, the validated merge of `--config` and the keys) passed as
`config_path`. Every setting a notebook exposes defaults to None there, so one precedence holds: defaults <
settings file < `GLAN_*` environment < explicit parameters (`-p`, `--params`, a value edited in the notebook).
`RunPlan.settings` derives them as the notebooks' settings cell does (`settings.notebooks.derive_settings` with the
declared parameter map), so `glan estimate` and preflight check exactly what the notebooks will run; every declared
parameter is passed (unset ones at their declared value), so an edited parameters cell never changes a batch run.
Anything else is an error before any notebook starts. Executed notebooks land in `outputs/<run>/notebooks/`, and
each notebook's status is recorded in the run manifest so `--resume` skips the ones that completed; `run.yaml` keeps the
invocation (settings file, parameters, stage range, notebooks folder) so `--resume` continues the same run.

Ctrl-C or SIGTERM interrupts the running kernel (its cell raises KeyboardInterrupt, papermill saves the notebook,
the kernel shuts down cleanly), marks what was running `interrupted` and raises `Interrupted`, whose message says
what is saved and how to resume; a second signal stops at once.
"""

from __future__ import annotations

import ast
import difflib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from glan_utils.app.interrupts import Interrupted, catch_signals
from glan_utils.app.ticker import Ticker
from glan_utils.core.errors import ConfigError
from glan_utils.core.paths import MANIFEST, NOTEBOOK_SETTINGS, NOTEBOOKS
from glan_utils.core.records import utc_now
from glan_utils.core.stale import stale_stages
from glan_utils.core.yaml_files import read_yaml
from glan_utils.runs.store import RunStore, is_alive
from glan_utils.settings import Settings
from glan_utils.settings.config import FILE_RELATIVE, get_dotted, set_dotted
from glan_utils.settings.notebooks import PARAMETERS, SHARED, declared, derive_settings

KERNEL = "python3"
# papermill re-inspects each notebook and warns about comments it cannot parse; `parameters` checks instead.
logging.getLogger("papermill").setLevel(logging.ERROR)
OVERRIDES = "overrides"
RUN_FILE = "run.yaml"
# Kernels log "running over TCP without encryption" on every start and "KeyboardInterrupt caught" on Ctrl-C: noise
# on a batch console. A cell's own output and errors come back through papermill, and a dead kernel is reported.
KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL"]
# Batch runs have no one to click widgets: notebooks that declare these get them.
BATCH_DEFAULTS: dict[str, Any] = {"interactive": False}
# Top-level settings that notebooks also declare as parameters with a non-None default.
FILE_WINS = ("seed", "language")
_NOTEBOOK_NAME = re.compile(r"^(\d+)_(\w+)\.ipynb$")


class StageFailed(RuntimeError):
    """A notebook raised while executing; the message names the stage, the error and the saved notebook."""


def _read_json(path: Path) -> dict[str, Any]:
    """A notebook as plain JSON: nbformat's validator imports jsonschema, seconds before any check could run."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path.name}: not a readable notebook ({exc})") from None
    return data if isinstance(data, dict) else {}


def _text(source: str | list[str]) -> str:
    """A cell source, stored either as one string or as a list of lines."""
    return source if isinstance(source, str) else "".join(source)


@dataclass(frozen=True)
class Notebook:
    """One numbered notebook, e.g. `01_taxonomy.ipynb` -> number 1, name 'taxonomy'."""

    path: Path
    number: int
    name: str

    @property
    def stem(self) -> str:
        return self.path.stem

    @cached_property
    def parameters(self) -> set[str]:
        """The names it takes: declared in `settings.notebooks` for the numbered notebooks, else those assigned in
        the cell tagged `parameters` (papermill's own inspector misreads comments holding '='; Python's does not)."""
        if self.defaults is not None:
            return set(self.defaults)
        cells = _read_json(self.path).get("cells") or []
        tagged = (c for c in cells if "parameters" in (c.get("metadata") or {}).get("tags", []))
        source = _text(next(tagged, {}).get("source", ""))
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            raise ConfigError(f"{self.path.name}: bad parameters cell (line {exc.lineno})") from None
        return {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)
        }

    @property
    def defaults(self) -> dict[str, Any] | None:
        """Every declared parameter's unset value (None for a notebook outside the declared map)."""
        return declared(self.stem)

    @property
    def keys(self) -> dict[str, str]:
        """Parameter name -> the dotted settings key it sets."""
        return PARAMETERS.get(self.stem, SHARED)


def discover(notebook_dir: str | Path) -> list[Notebook]:
    """The numbered notebooks in a folder, in stage order."""
    found = []
    for path in Path(notebook_dir).glob("*.ipynb"):
        match = _NOTEBOOK_NAME.match(path.name)
        if match:
            found.append(Notebook(path, int(match.group(1)), match.group(2)))
    if not found:
        raise ConfigError(f"no numbered notebooks (NN_name.ipynb) in {notebook_dir}")
    return sorted(found, key=lambda nb: nb.number)


def declared_notebooks() -> list[Notebook]:
    """The numbered notebooks as the parameter map declares them, for commands run where no notebooks folder is
    (`glan estimate` elsewhere): their parameters come from the map, never from a file."""
    return [Notebook(Path(f"{stem}.ipynb"), int(stem[:2]), stem[3:]) for stem in PARAMETERS]


def _find(notebooks: list[Notebook], ref: str) -> int:
    """Index of the notebook named by number ('2', '02'), name ('subjects') or stem ('02_subjects')."""
    for i, nb in enumerate(notebooks):
        if ref in {nb.stem, nb.name} or (ref.isdigit() and int(ref) == nb.number):
            return i
    choices = ", ".join(nb.stem for nb in notebooks)
    raise ConfigError(f"unknown stage '{ref}': expected a number or name of {choices}")


def select(notebooks: list[Notebook], start: str | None = None, stop: str | None = None) -> list[Notebook]:
    """Notebooks from `start` to `stop` inclusive (both optional)."""
    first = _find(notebooks, start) if start else 0
    last = _find(notebooks, stop) if stop else len(notebooks) - 1
    if first > last:
        raise ConfigError(f"--from {start} comes after --to {stop}")
    return notebooks[first : last + 1]


def settings_keys(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    """Every dotted settings key (`llm.concurrency`, `subjects.rounds`, ...), for "did you mean"."""
    keys = []
    for name, info in model.model_fields.items():
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            keys += settings_keys(sub, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _closest(name: str, known: Iterable[str]) -> str:
    """'; did you mean x?' with the (at most three) closest names, or '' when none is close."""
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


@dataclass
class RunPlan:
    """What to execute: notebooks, the settings file, notebook parameters and settings overrides.

    Names are checked against every notebook of `catalog` (default: the selected ones), so one parameters file
    serves any `--from/--to` selection; each notebook receives only the names it declares.
    """

    run_name: str
    notebooks: list[Notebook]
    config_path: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)
    catalog: list[Notebook] = field(default_factory=list)

    @property
    def known(self) -> list[Notebook]:
        """The notebooks whose parameter names count: the catalog, else the selection, else the declared ones."""
        return self.catalog or self.notebooks or declared_notebooks()

    @cached_property
    def routed(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split `params` into (notebook parameters, settings overrides); unknown names raise ConfigError, and so
        does a name that sets different keys in different notebooks (`temperature`), naming the keys to use."""
        notebooks = self.known
        declared_names = set().union(*(nb.parameters for nb in notebooks))
        notebook_params, overrides = {}, {}
        for key, value in self.params.items():
            if key in declared_names and key != OVERRIDES:
                notebook_params[key] = value
            elif key.split(".")[0] not in Settings.model_fields:
                raise ConfigError(
                    f"unknown parameter '{key}': neither a notebook parameter nor a settings key"
                    + _closest(key, (declared_names - {OVERRIDES}) | set(settings_keys()))
                )
            else:
                overrides[key] = value
        for name, value in notebook_params.items():
            keys = sorted({nb.keys[name] for nb in notebooks if name in nb.keys})
            if value is not None and len(keys) > 1:
                raise ConfigError(
                    f"parameter '{name}' sets {len(keys)} settings ({', '.join(keys)}): pass the dotted key "
                    f"instead, e.g. -p {keys[0]} {value}"
                )
        return notebook_params, overrides

    @cached_property
    def settings(self) -> Settings:
        """The settings the notebooks will see (`derive_settings`, as in their settings cell), validated now so a
        bad key fails before any notebook runs."""
        notebook_params, overrides = self.routed
        return derive_settings(self.config_path, {**notebook_params, "run_name": self.run_name}, self.keys, overrides)

    @cached_property
    def keys(self) -> dict[str, str]:
        """Parameter name -> the settings key it sets, over every notebook whose names count."""
        return {name: key for nb in self.known for name, key in nb.keys.items()}

    def overrides_for(self, notebook: Notebook) -> dict[str, Any]:
        """The dotted keys one notebook gets: the given ones, plus the parameters that other notebooks declare
        (`per_round` reaches 01 as `subjects.per_round`), so every notebook derives the run's settings."""
        notebook_params, overrides = self.routed
        foreign = {
            self.keys[name]: value
            for name, value in notebook_params.items()
            if name in self.keys and name not in notebook.parameters and value is not None
        }
        return {**overrides, **foreign}

    @property
    def run_dir(self) -> Path:
        return self.settings.run_dir.resolve()

    def parameters_for(self, notebook: Notebook) -> dict[str, Any]:
        """Papermill parameters for one notebook: every name it declares (unset ones at their declared value)."""
        notebook_params, _ = self.routed
        overrides = self.overrides_for(notebook)
        config = self.config_path.resolve() if self.config_path else None
        if overrides and OVERRIDES not in notebook.parameters:
            config = self.merged_config()
        base = {
            **(notebook.defaults or {}),  # every declared name: an edited parameters cell never changes a batch run
            **BATCH_DEFAULTS,
            "run_name": self.run_name,
            "config_path": str(config) if config else None,
            "output_dir": str(Path(self.settings.output_dir).resolve()),
            # a notebook's own default (`seed = 0`) would win over the settings file: pass the resolved values
            **{name: getattr(self.settings, name) for name in FILE_WINS},
            OVERRIDES: overrides,
            **notebook_params,
        }
        return {k: v for k, v in base.items() if k in notebook.parameters}

    def merged_config(self) -> Path:
        """`--config` plus the settings keys, validated, as one file for notebooks without `overrides`."""
        path = self.run_dir / NOTEBOOKS / NOTEBOOK_SETTINGS
        path.parent.mkdir(parents=True, exist_ok=True)
        snapshot = self.settings.snapshot()
        for dotted in FILE_RELATIVE:  # relative paths in a settings file are read relative to that file
            if value := get_dotted(snapshot, dotted):
                set_dotted(snapshot, dotted, str(Path(value).resolve()))
        path.write_text(yaml.safe_dump(snapshot, sort_keys=False), encoding="utf-8")
        return path

    def save(self, notebook_dir: Path | None = None) -> None:
        """Remember the invocation so `--resume` continues the same run: settings file, parameters, stage range."""
        path = self.run_dir / NOTEBOOKS / RUN_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = notebook_dir or self.notebooks[0].path.parent
        saved = {
            "config_path": str(self.config_path.resolve()) if self.config_path else None,
            "params": self.params,
            "from": self.notebooks[0].stem,
            "to": self.notebooks[-1].stem,
            "notebooks": str(folder.resolve()),
        }
        path.write_text(yaml.safe_dump(saved, sort_keys=False), encoding="utf-8")


@dataclass(frozen=True)
class SavedRun:
    """How a run was started, read back from its `notebooks/run.yaml` for `--resume`."""

    run_dir: Path
    config_path: Path | None
    params: dict[str, Any]
    start: str | None = None
    stop: str | None = None
    notebooks: Path | None = None


def saved_invocation(run_dir: Path) -> SavedRun | None:
    """The invocation a run was started with, or None when the directory holds no run started by `glan run`."""
    path = run_dir / NOTEBOOKS / RUN_FILE
    if not path.exists():
        return None
    saved = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    config, folder = saved.get("config_path"), saved.get("notebooks")
    return SavedRun(
        run_dir=run_dir.resolve(),
        config_path=Path(config) if config else None,
        params=dict(saved.get("params") or {}),
        start=saved.get("from"),
        stop=saved.get("to"),
        notebooks=Path(folder) if folder else None,
    )


def parse_params(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """`-p key value` pairs with values read as YAML scalars/collections, as papermill's `-y` does."""
    out = {}
    for key, raw in pairs:
        try:
            out[key] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            out[key] = raw
    return out


def load_params_file(path: str | Path) -> dict[str, Any]:
    """A YAML mapping of parameters (notebook parameters and dotted settings keys)."""
    data = read_yaml(path, "parameters file")
    if not isinstance(data, dict):
        raise ConfigError(f"parameters file must be a mapping of name: value: {path}")
    return data


def _is_complete(manifest: Mapping[str, Any], notebook: Notebook, output: Path) -> bool:
    entry = manifest.get("stages", {}).get(notebook.stem, {})
    return entry.get("status") == "complete" and output.exists()


def _stages_of(notebook: Notebook) -> list[str]:
    """The generation stages a notebook runs (none for notebooks outside the GLAN flow)."""
    from glan_utils.stages import STAGES  # lazily: only resumes and interrupts need the registry

    return [name for name, stage in STAGES.items() if stage.notebook == notebook.stem]


def _touched(store: RunStore, nb: Notebook) -> list[str]:
    """The stages a notebook's last attempt started (sub-stages such as `subject_rounds` included, found by
    their start time), then its registered stages: what an interrupted or resumed notebook reports."""
    stages = store.read_manifest().get("stages", {})
    since = stages.get(nb.stem, {}).get("started_at")
    touched = [
        name
        for name, info in stages.items()
        if info.get("kind") != "notebook" and since and str(info.get("started_at") or "") >= since
    ]
    return list(dict.fromkeys([*touched, *_stages_of(nb)]))


def on_disk(store: RunStore, stages: Iterable[str]) -> str:
    """'questions 70 records (interrupted), answers 0 records' for the given stages."""
    manifest = store.read_manifest().get("stages", {})
    parts = []
    for name in stages:
        status = manifest.get(name, {}).get("status")
        parts.append(f"{name} {store.line_count(name):,} records" + (f" ({status})" if status else ""))
    return ", ".join(parts)


def check_not_running(run_dir: Path) -> None:
    """Refuse to start a run whose notebook another live `glan` process is executing (two writers, one run)."""
    manifest_path = run_dir / MANIFEST
    if not manifest_path.exists():
        return
    for name, info in RunStore(run_dir).read_manifest().get("stages", {}).items():
        if info.get("kind") == "notebook" and info.get("status") == "running" and is_alive(info):
            raise ConfigError(f"run '{run_dir.name}' is running already: {name} in process {info.get('pid')}")


def execute(
    plan: RunPlan,
    *,
    resume: bool = False,
    echo: Callable[[str], None] = print,
    resume_command: str | None = None,
    tick: float = 0.0,
) -> list[Path]:
    """Execute the plan's notebooks in order; returns the executed notebooks' paths.

    With `resume`, notebooks marked complete are skipped, unless stale (their inputs changed since); a partial
    stage reruns and its run store skips the work already done. Every `tick` seconds (0: never) a running
    notebook echoes one progress line (`Ticker`). Raises StageFailed at the first notebook that raises (later
    ones are not started), and Interrupted on Ctrl-C/SIGTERM, with `resume_command` in its message.
    """
    store = RunStore(plan.run_dir)
    out_dir = plan.run_dir / NOTEBOOKS
    plan.save()
    executed = []
    with catch_signals() as received:
        for nb in plan.notebooks:
            output = out_dir / nb.path.name
            if resume and _is_complete(store.read_manifest(), nb, output):
                if not (why := stale_stages(plan.run_dir).get(nb.stem)):
                    echo(f"{nb.stem}: complete, skipped")
                    executed.append(output)
                    continue
                echo(f"{nb.stem}: stale ({why}), running again")
            if resume and (stages := _touched(store, nb)):
                echo(f"{nb.stem}: resuming; already on disk: {on_disk(store, stages)}")
            try:
                _execute_one(plan, nb, output, store, echo, received, tick)
            except KeyboardInterrupt:
                received.append(received[0] if received else "SIGINT")
            if received:
                raise _interrupted(plan, nb, output, store, received[0], resume_command)
            executed.append(output)
    return executed


def _interrupted(
    plan: RunPlan, nb: Notebook, output: Path, store: RunStore, signal_name: str, resume_command: str | None
) -> Interrupted:
    """Mark what was running `interrupted` and say, in one line, what is saved and how to go on."""
    store.interrupt_running(f"interrupted by {signal_name}")
    if store.read_manifest().get("stages", {}).get(nb.stem, {}).get("status") != "complete":
        store.update_manifest(nb.stem, status="interrupted", finished_at=utc_now().isoformat())
    stages = [s for s in _touched(store, nb) if store.records_path(s).exists()]
    saved = f"{on_disk(store, stages)}; " if stages else ""
    command = resume_command or f"glan run {plan.run_name} --resume"
    return Interrupted(
        f"interrupted ({signal_name}) during {nb.stem}; saved: {saved}notebook {output}; resume with: {command}",
        signal_name,
    )


def _execute_one(
    plan: RunPlan,
    nb: Notebook,
    output: Path,
    store: RunStore,
    echo: Callable[[str], None],
    received: list[str],
    tick: float,
) -> None:
    import papermill  # lazily: checks before compute need none of papermill's (many) imports
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    echo(f"{nb.stem}: running")
    started = time.perf_counter()
    store.update_manifest(
        nb.stem, kind="notebook", status="running", started_at=utc_now().isoformat(), notebook=str(output), error=None
    )
    try:
        with Ticker(store, nb.stem, echo, tick):
            papermill.execute_notebook(
                str(nb.path),
                str(output),
                parameters=plan.parameters_for(nb),
                kernel_name=KERNEL,
                progress_bar=False,
                extra_arguments=KERNEL_ARGS,
            )
    except (PapermillExecutionError, DeadKernelError) as exc:
        if received:
            return  # the interrupt is reported by the caller
        error = f"{exc.ename}: {exc.evalue}".strip() if isinstance(exc, PapermillExecutionError) else str(exc)
        store.update_manifest(nb.stem, status="failed", finished_at=utc_now().isoformat(), error=error)
        raise StageFailed(f"{nb.stem} failed: {error} (see {output})") from None
    elapsed = time.perf_counter() - started
    store.update_manifest(nb.stem, status="complete", finished_at=utc_now().isoformat(), seconds=round(elapsed, 1))
    echo(f"{nb.stem}: done in {elapsed:.1f} s")
