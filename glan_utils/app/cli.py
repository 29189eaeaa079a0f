"""The `glan` command: run the notebooks as a batch job, sweep parameters, check status, estimate, report.

Every user error (bad parameter, bad config, missing run, endpoint down) is one line on stderr and exit code 2,
reported before the first notebook starts; a notebook that raises is one line naming the stage and the saved
notebook, and exit code 1; Ctrl-C or SIGTERM is one line saying what is saved and the resume command, and exit
code 130/143. Runs are found by name through the run index (`app.index`), wherever their `output_dir` is.

Imports of the heavy layers (pandas, papermill, pydantic settings) happen inside the commands, so `glan --help`
answers at once.
"""

from __future__ import annotations

import importlib
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from glan_utils.core.errors import GlanError, InputError, SetupError
from glan_utils.core.paths import BATCHES

if TYPE_CHECKING:
    import pandas as pd

    from glan_utils.app.runner import Notebook, RunPlan, SavedRun

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="GLAN workbench: generate instruction data from a taxonomy, fine-tune, evaluate.",
)

DEFAULT_NOTEBOOKS = Path("notebooks")
_NOTEBOOK_FILE = re.compile(r"^\d+_\w+\.ipynb$")


def _stage_names() -> str:
    """The numbered notebooks of ./notebooks (else the package's own), for --from/--to help; a glob, no parsing."""
    for folder in (DEFAULT_NOTEBOOKS, Path(__file__).resolve().parents[2] / "notebooks"):
        names = sorted(p.stem for p in folder.glob("*.ipynb") if _NOTEBOOK_FILE.match(p.name))
        if names:
            return ", ".join(names)
    return "NN_name notebooks"


_STAGES_HELP = _stage_names()
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Settings YAML (see configs/).")]
# Typer has no repeatable two-value option; `list[Any]` plus `_PairsCommand` gives click's nargs=2, multiple.
ParamOpt = Annotated[
    list[Any] | None,
    typer.Option(
        "--param", "-p", metavar="KEY VALUE", help="A notebook parameter or a dotted settings key (repeatable)."
    ),
]
ParamsFileOpt = Annotated[Path | None, typer.Option("--params", help="YAML mapping of parameters.")]
NotebooksOpt = Annotated[
    Path | None,
    typer.Option("--notebooks", help="Folder of numbered notebooks (default: notebooks; on --resume, the run's own)."),
]
RunArg = Annotated[str, typer.Argument(help="Run name: found through the run index, else under <output_dir>/.")]


class _PairsCommand(TyperCommand):
    """A command whose `--param` option takes two values (KEY VALUE), as papermill's `-p` does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for option in self.params:
            if option.name == "param":
                option.nargs = 2


def _version(value: bool) -> None:
    if value:
        try:
            typer.echo(f"glan {version('glan-workbench')}")
        except PackageNotFoundError:
            typer.echo("glan (not installed as a package)")
        raise typer.Exit()


@app.callback()
def main(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """GLAN workbench: generate instruction data from a taxonomy, fine-tune, evaluate."""


@contextmanager
def _user_errors() -> Iterator[None]:
    """GlanError: one stderr line, exit 2; a failed notebook: one line, exit 1; an interrupt: one line, 130/143."""
    from glan_utils.app.runner import Interrupted, StageFailed

    try:
        yield
    except GlanError as exc:
        typer.echo(f"glan: {exc}", err=True)
        raise typer.Exit(2) from None
    except StageFailed as exc:
        typer.echo(f"glan: {exc}", err=True)
        raise typer.Exit(1) from None
    except Interrupted as exc:
        typer.echo(f"glan: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("glan: interrupted before any notebook started; nothing was run", err=True)
        raise typer.Exit(130) from None


def _params(params_file: Path | None, pairs: list[Any] | None) -> dict[str, Any]:
    from glan_utils.app import runner

    base = runner.load_params_file(params_file) if params_file else {}
    return {**base, **runner.parse_params(pairs or [])}


def _candidates(run: str, config: Path | None, params: dict[str, Any] | None = None) -> list[Path]:
    """Where run `run` may live, in order: under the output_dir that `-c`/`-p output_dir` name (else the default
    `outputs/` here), then the run index's entry for this checkout."""
    from glan_utils.app import index
    from glan_utils.settings import load_settings

    top = {k: v for k, v in (params or {}).items() if k == "output_dir"}
    configured = load_settings(config, {**top, "run_name": run}).run_dir
    places = [configured, index.lookup(run)]
    return list({p.resolve(): p for p in places if p is not None}.values())


def _not_found(what: str, run: str, looked: list[Path]) -> InputError:
    from glan_utils.app.index import index_path

    places = " or ".join(str(p.resolve()) for p in looked)
    return InputError(
        f"{what} '{run}': looked in {places} and the run index ({index_path()}); "
        "pass -c with the settings file the run was started with"
    )


def _run_dir(run: str, config: Path | None) -> Path:
    looked = _candidates(run, config)
    found = next((p for p in looked if p.is_dir()), None)
    if found is None:
        raise _not_found("no such run", run, looked)
    return found


def _saved_run(run: str, config: Path | None, params: dict[str, Any]) -> SavedRun:
    """The invocation of the run `--resume` continues, or one line saying where it looked."""
    from glan_utils.app import runner

    looked = _candidates(run, config, params)
    for run_dir in looked:
        if (saved := runner.saved_invocation(run_dir)) is not None:
            return saved
    raise _not_found("nothing to resume for run", run, looked)


def _resume_command(run: str, config: Path | None) -> str:
    """The command that continues a run from any directory."""
    return f"glan run {run} --resume" + (f" -c {config.resolve()}" if config else "")


def _prepare(plan: RunPlan, replan: bool = False) -> None:
    """Everything checkable before compute: parameters, settings, files, endpoint, model, key, and that the
    settings which shaped the run's records are unchanged (with `replan`: records they contradict are moved
    aside); then index it."""
    from glan_utils.app import index
    from glan_utils.app.preflight import preflight
    from glan_utils.app.runner import check_not_running
    from glan_utils.stages import pipeline

    plan.routed  # noqa: B018 -- every parameter is known
    check_not_running(plan.run_dir)
    preflight(plan)
    if not replan:
        pipeline.check_run(plan.settings)
    elif line := pipeline.replan(plan.settings):
        typer.echo(line)
    pipeline.check_inputs(plan.settings, plan.notebooks[0].stem)
    index.remember(plan.run_name, plan.run_dir, plan.config_path)


def _warn_if_edited(folder: Path) -> None:
    """One line when the notebooks differ from the commit: those edits run (parameters cells excepted)."""
    from glan_utils.app.hygiene import edited_notebooks

    if edited := edited_notebooks(folder):
        typer.echo(
            f"glan: warning: {', '.join(edited)} in {folder} differ from the commit and run as edited "
            f"(`git diff {folder}` shows how; `git checkout {folder}` restores them)",
            err=True,
        )


def _closing_line(name: str, run_dir: Path, seconds: float, outcome: str, before: dict[str, Any]) -> str:
    """What this invocation spent (the ledger since `before`), then the whole run's totals, in one line."""
    from glan_utils.app.summary import run_totals, totals_line

    totals = run_totals(run_dir)
    now = {key: totals[key] - before.get(key, 0) for key in totals}
    all_cached = now["calls"] and now["cache_hits"] == now["calls"]
    cached = " (all answered from the cache)" if all_cached else ""
    return (
        f"run '{name}' {outcome} in {seconds:.1f} s: {totals_line(now)}{cached}; whole run so far: "
        f"{totals_line(totals)}; outputs in {run_dir}"
    )


def _spent(run_dir: Path) -> dict[str, Any]:
    from glan_utils.app.summary import run_totals

    return run_totals(run_dir)


@app.command(cls=_PairsCommand)
def run(
    run: Annotated[str, typer.Argument(help="Run name; outputs go to <output_dir>/<run>/.")],
    config: ConfigOpt = None,
    param: ParamOpt = None,
    params_file: ParamsFileOpt = None,
    start: Annotated[str | None, typer.Option("--from", help=f"First stage (number or name): {_STAGES_HELP}.")] = None,
    stop: Annotated[str | None, typer.Option("--to", help="Last stage (number or name), as --from.")] = None,
    resume: Annotated[
        bool,
        typer.Option(help="Continue the run: same settings file, parameters and stage range; skip what is done."),
    ] = False,
    sweep: Annotated[
        Path | None, typer.Option(help="YAML list/grid of parameter sets (format: README, 'Sweeps').")
    ] = None,
    notebooks: NotebooksOpt = None,
    replan: Annotated[
        bool,
        typer.Option(
            "--replan",
            help="The run's records were made with other seed/sizes/models: move the records those settings change "
            "aside (to <run>/replaced/), record the change in config.history.jsonl, and run them again.",
        ),
    ] = False,
    tick: Annotated[
        float, typer.Option(help="Seconds between progress lines while a notebook runs (0: none).", min=0)
    ] = 10.0,
) -> None:
    """Execute the numbered notebooks in order with papermill; executed copies go to <run>/notebooks/."""
    from glan_utils.app import runner

    with _user_errors():
        params = _params(params_file, param)
        if resume and not sweep:
            saved = _saved_run(run, config, params)
            typer.echo(f"run {saved.run_dir}")
            # the run stays where it is, whatever the current directory: its output_dir is pinned
            pinned = {**saved.params, "output_dir": str(saved.run_dir.parent)}
            config, params = config or saved.config_path, {**pinned, **params}
            if not (start or stop):
                start, stop = saved.start, saved.stop
            notebooks = notebooks or saved.notebooks
        catalog = runner.discover(notebooks or DEFAULT_NOTEBOOKS)
        selected = runner.select(catalog, start, stop)
        _warn_if_edited(notebooks or DEFAULT_NOTEBOOKS)
        if sweep:
            _run_sweep(run, catalog, selected, config, params, sweep, resume)
            return
        plan = runner.RunPlan(run, selected, config, params, catalog)
        _prepare(plan, replan)
        started, outcome, before = time.perf_counter(), "stopped", _spent(plan.run_dir)
        try:
            command = _resume_command(run, config)
            runner.execute(plan, resume=resume, echo=typer.echo, resume_command=command, tick=tick)
            outcome = "done"
        finally:
            typer.echo(_closing_line(run, plan.run_dir, time.perf_counter() - started, outcome, before))


@app.command(cls=_PairsCommand)
def train(
    config: ConfigOpt = None,
    param: ParamOpt = None,
    params_file: ParamsFileOpt = None,
    run: Annotated[str | None, typer.Option("--run", help="Run whose exported data set to train on.")] = None,
) -> None:
    """Fine-tune on a run's exported data set (notebook 06's code) with the `finetune` settings, e.g.
    `accelerate launch --config_file configs/accelerate/fsdp.yaml $(which glan) train -c configs/paper.yaml`."""
    from glan_utils.settings import load_settings
    from glan_utils.train.sft import finetune

    with _user_errors():
        params = _params(params_file, param) | ({"run_name": run} if run else {})
        settings = load_settings(config, params)
        finetune(settings.finetune, settings.run_dir, echo=typer.echo)


def _run_sweep(
    base: str,
    catalog: list[Notebook],
    selected: list[Notebook],
    config: Path | None,
    params: dict[str, Any],
    sweep: Path,
    resume: bool,
) -> None:
    """Validate and check every run of the sweep, execute them one by one, then print and save the comparison."""
    from glan_utils.app import runner
    from glan_utils.app.summary import markdown_table
    from glan_utils.app.sweep import comparison, load_sweep

    runs = load_sweep(sweep, base)
    plans = [runner.RunPlan(r.name, selected, config, {**params, **r.params}, catalog) for r in runs]
    for plan in plans:
        _prepare(plan)  # every run checked before spending anything
    errors: dict[str, str] = {}
    seconds: dict[str, float] = {}
    again = f"glan run {base} --sweep {sweep.resolve()} --resume" + (f" -c {config.resolve()}" if config else "")
    for plan in plans:
        typer.echo(f"== {plan.run_name}")
        started, outcome, before = time.perf_counter(), "stopped", _spent(plan.run_dir)
        try:
            runner.execute(plan, resume=resume, echo=typer.echo, resume_command=again)
            outcome = "done"
        except (runner.StageFailed, GlanError) as exc:
            errors[plan.run_name], outcome = str(exc), "failed"
            typer.echo(f"glan: {exc}", err=True)
        finally:
            seconds[plan.run_name] = time.perf_counter() - started
            typer.echo(_closing_line(plan.run_name, plan.run_dir, seconds[plan.run_name], outcome, before))
    output_dir = Path(plans[0].settings.output_dir)
    table = comparison(runs, output_dir, errors, seconds)
    csv = output_dir / f"{base}-sweep.csv"
    table.to_csv(csv, index=False)
    typer.echo(markdown_table(table))
    typer.echo(f"comparison saved to {csv}")
    typer.echo(_sweep_line(base, table, len(errors), sum(seconds.values())))
    if errors:
        raise typer.Exit(1)


def _sweep_line(base: str, table: Any, failed: int, seconds: float) -> str:
    """The sweep's totals in one sentence."""
    total = {
        c: int(table[c].fillna(0).sum()) if c in table else 0
        for c in ("calls", "cache_hits", "call_failures", "tokens")
    }
    cost = float(table["cost_usd"].fillna(0).sum()) if "cost_usd" in table else 0.0
    return (
        f"sweep '{base}': {len(table)} runs ({failed} failed) in {seconds:.1f} s: {total['calls']:,} model "
        f"calls, {total['cache_hits']:,} cache hits, {total['call_failures']:,} failed, {total['tokens']:,} tokens, "
        f"${cost:,.4f}"
    )


@app.command()
def status(run: RunArg, config: ConfigOpt = None, notebooks: NotebooksOpt = None) -> None:
    """The run directory, then per stage: complete/stale/pending/not in range/failed/interrupted, records, cost."""
    from glan_utils.app import runner
    from glan_utils.app.summary import COLUMNS, markdown_table, rows_markdown, run_rows, totals_line

    with _user_errors():
        run_dir = _run_dir(run, config)
        typer.echo(f"run {run_dir.resolve()}")
        rows = run_rows(run_dir)
        saved = runner.saved_invocation(run_dir)
        folder = notebooks or (saved.notebooks if saved else None) or DEFAULT_NOTEBOOKS
        catalog = runner.discover(folder) if folder.is_dir() else []
        chosen = {nb.stem for nb in runner.select(catalog, saved.start, saved.stop)} if saved and catalog else None
        known = {row["stage"] for row in rows}
        status_of = {row["stage"]: row["status"] for row in rows}
        extra = [{"stage": nb.stem, "status": _not_run(nb.stem in (chosen or {nb.stem}))} for nb in catalog]
        done = chosen is not None and all(status_of.get(nb) == "complete" for nb in chosen)
        extra += [{"stage": s, "status": _not_run(not done)} for s in _generation_stages(known)]
        rows += [row for row in extra if row["stage"] not in known]
        typer.echo(rows_markdown(rows, COLUMNS))
        typer.echo(f"total: {totals_line(run_dir)}")
        if (jobs := _batch_table(run_dir)) is not None:
            typer.echo(f"Batch API jobs (cancel: glan batches {run} --cancel):")
            typer.echo(markdown_table(jobs))


def _not_run(in_range: bool) -> str:
    """A stage with no entry yet: pending when the run's --from/--to covers it, else not in range."""
    return "pending" if in_range else "not in range"


def _batch_table(run_dir: Path) -> pd.DataFrame | None:
    """Per stage in batch mode: batches submitted / running / completed / failed, lines and an ETA; None if none."""
    states = sorted((run_dir / BATCHES).glob("*.sqlite"))
    if not states:
        return None
    import pandas as pd

    from glan_utils.llm.batch import batch_status  # lazily: the Batch API client is heavy and rarely needed

    return pd.DataFrame([{"stage": path.stem, **batch_status(path)} for path in states])


def _generation_stages(recorded: set[str]) -> list[str]:
    """The GLAN stages, when the run has started any of them (so a stage not yet begun still gets a row)."""
    from glan_utils.core.records import pipeline_stages

    stages = pipeline_stages()
    return stages if recorded & set(stages) else []


@app.command(cls=_PairsCommand)
def estimate(
    config: ConfigOpt = None,
    param: ParamOpt = None,
    params_file: ParamsFileOpt = None,
    run: Annotated[
        str | None, typer.Option("--run", help="Read this run's records (stages done size the next ones).")
    ] = None,
    notebooks: NotebooksOpt = Path("notebooks"),
) -> None:
    """Calls, tokens and cost of a planned run, per stage, before spending anything.

    Takes the same settings as `glan run` (file, `GLAN_*`, `-p`/`--params` by notebook name or settings key).
    Without `--run` it plans from the settings alone and reads no run; with it, stages that have records hand on
    what they kept, so the estimate after a stage is exact for the next, and it lists what a taxonomy edit (the
    file or the review) will generate, bring back, drop and rename, with its calls, dollars and pairs.
    """
    from glan_utils.app import runner

    with _user_errors():
        try:
            pipeline = importlib.import_module("glan_utils.stages.pipeline")
        except ModuleNotFoundError:
            raise SetupError("estimates need glan_utils.stages.pipeline, which is not installed") from None
        catalog = runner.discover(notebooks) if notebooks.is_dir() else []
        params = _params(params_file, param)
        settings = runner.RunPlan(run or "estimate", catalog, config, params, catalog).settings
        if run is not None and not settings.run_dir.is_dir():
            raise InputError(f"no such run: {settings.run_dir}")
        with tempfile.TemporaryDirectory() as empty:
            if run is None:  # plan from settings only: no run's records, not even for the prompt previews
                settings = settings.model_copy(update={"output_dir": empty})
            typer.echo(pipeline.plan_source(settings, read_run=run is not None))
            table, estimates = _estimate_table(pipeline, settings, read_run=run is not None)
        typer.echo(estimate_text(table, settings))
        for line in pipeline.against_budget(settings, estimates):
            typer.echo(line)
        for line in pipeline.taxonomy_diff(settings).lines() if run is not None else []:
            typer.echo(line)


def _estimate_table(pipeline: Any, settings: Any, read_run: bool) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per stage: its plan, where its input count came from, tokens and dollars at `max_tokens` (an upper
    bound) and at a typical reply's length; and the (upper-bound) estimates. A stage the settings switch off
    says so and hands nothing on."""
    import pandas as pd

    rows, estimates = [], {}
    for stage, planned in pipeline.stage_plans(settings, read_run).items():
        est = estimates[stage] = pipeline.estimate_plan(settings, stage, planned.plan.calls)
        typical = pipeline.estimate_plan(settings, stage, planned.plan.calls, typical=True)
        on = pipeline.STAGES[stage].enabled is None or pipeline.STAGES[stage].enabled(settings)
        rows.append(
            {
                "stage": stage if on else f"{stage} (disabled)",
                "inputs": planned.inputs,
                "inputs_from": planned.inputs_from,
                "calls": est.calls,
                "outputs": planned.plan.outputs if on else None,
                "prompt_tokens": est.prompt_tokens,
                "completion_tokens": est.completion_tokens,
                "cost_usd": est.cost_usd,
                "typical_completion_tokens": typical.completion_tokens,
                "typical_cost_usd": typical.cost_usd,
                "model": est.model,
            }
        )
    return pd.DataFrame(rows), estimates


def estimate_text(table: pd.DataFrame, settings: Any) -> str:
    """The estimate's table (thousands separators, numbers right-aligned) and its totals line: upper bound, then
    typical. The README's paper-scale table is this text (`tests/test_settings_precedence.py` keeps them equal)."""
    pairs = int(table.loc[table["stage"] == "answers", "outputs"].sum())
    batch = f" at the Batch API price (x{settings.batch.discount:g})" if settings.llm.mode == "batch" else ""
    total = (
        f"total: {table['calls'].sum():,} calls, {pairs:,} pairs, {table['prompt_tokens'].sum():,} prompt + "
        f"{table['completion_tokens'].sum():,} completion tokens, ~${table['cost_usd'].sum():,.2f} upper bound "
        f"(every reply at max_tokens); typical replies: {table['typical_completion_tokens'].sum():,} completion "
        f"tokens, ~${table['typical_cost_usd'].sum():,.2f}{batch}"
    )
    shown = table.astype(object).copy()
    for column in table.columns:
        if column.endswith("cost_usd"):
            shown[column] = [f"{v:,.2f}" for v in table[column]]
        elif table[column].dtype.kind in "if" or column == "outputs":
            shown[column] = [f"{int(v):,}" if v == v and v is not None else "" for v in table[column]]
    align = ["right" if table[c].dtype.kind in "if" or c == "outputs" else "left" for c in table.columns]
    text = shown.to_markdown(index=False, disable_numparse=True, colalign=align)
    return f"{text}\n{total}"


@app.command()
def report(
    run: RunArg,
    config: ConfigOpt = None,
    show_code: Annotated[bool, typer.Option("--show-code/--hide-code", help="Include code cells.")] = False,
    out: Annotated[Path | None, typer.Option(help="HTML file to write (default <run>/report.html).")] = None,
) -> None:
    """One self-contained, offline HTML page: stage/cost table, config, data set card, notebooks' outputs."""
    from glan_utils.app.report import render_report

    with _user_errors():
        run_dir = _run_dir(run, config)
        typer.echo(f"run {run_dir.resolve()}")
        path = render_report(run_dir, out, show_code=show_code)
        typer.echo(f"report written to {path}")


@app.command()
def batches(
    run: str,
    config: ConfigOpt = None,
    cancel: Annotated[bool, typer.Option("--cancel", help="Cancel every unfinished batch of the run.")] = False,
) -> None:
    """Batch API jobs of a run (`llm.mode: batch`), per stage: submitted / running / done / failed and an ETA."""
    from glan_utils.app.summary import markdown_table
    from glan_utils.core.aio import run as run_async
    from glan_utils.llm.batch import cancel_batches
    from glan_utils.runs.client import run_client
    from glan_utils.settings import load_settings

    with _user_errors():
        run_dir = _run_dir(run, config)
        states = sorted((run_dir / BATCHES).glob("*.sqlite"))
        if not states:
            raise InputError(f"run '{run}' has no Batch API jobs ({run_dir / 'batches'} is empty)")
        if cancel:
            settings = load_settings(config, {"run_name": run})
            if settings.llm.base_url is None:
                raise SetupError("cancelling batches needs llm.base_url (the Batch API endpoint)")

            async def cancel_all() -> list[str]:
                async with run_client(settings, check=False) as client:
                    return [i for path in states for i in await cancel_batches(client, path)]

            typer.echo(f"cancel requested for {len(run_async(cancel_all()))} batches (partial output is kept)")
        typer.echo(markdown_table(_batch_table(run_dir)))
