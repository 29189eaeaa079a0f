"""The `glan` command: run the notebooks as a batch job, sweep parameters, check status, estimate, report.

Every user error (bad parameter, bad config, missing run) is one line on stderr and exit code 2; a notebook
that raises is one line naming the stage and the saved notebook, and exit code 1.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from typer.core import TyperCommand

from glan_utils.app import runner
from glan_utils.app.report import markdown_table, render_report, run_table, totals_line
from glan_utils.app.sweep import comparison, load_sweep
from glan_utils.core.errors import GlanError, InputError, SetupError
from glan_utils.settings import load_settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="GLAN workbench: generate instruction data from a taxonomy, fine-tune, evaluate.",
)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Settings YAML (see configs/).")]
# Typer has no repeatable two-value option; `list[Any]` plus `_PairsCommand` gives click's nargs=2, multiple.
ParamOpt = Annotated[
    list[Any] | None,
    typer.Option(
        "--param", "-p", metavar="KEY VALUE", help="A notebook parameter or a dotted settings key (repeatable)."
    ),
]
ParamsFileOpt = Annotated[Path | None, typer.Option("--params", help="YAML mapping of parameters.")]
NotebooksOpt = Annotated[Path, typer.Option("--notebooks", help="Folder of numbered notebooks.")]


class _PairsCommand(TyperCommand):
    """A command whose `--param` option takes two values (KEY VALUE), as papermill's `-p` does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for option in self.params:
            if option.name == "param":
                option.nargs = 2


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn GlanError into one stderr line and exit 2, a failed notebook into one line and exit 1."""
    try:
        yield
    except GlanError as exc:
        typer.echo(f"glan: {exc}", err=True)
        raise typer.Exit(2) from None
    except runner.StageFailed as exc:
        typer.echo(f"glan: {exc}", err=True)
        raise typer.Exit(1) from None


def _params(params_file: Path | None, pairs: list[Any] | None) -> dict[str, Any]:
    base = runner.load_params_file(params_file) if params_file else {}
    return {**base, **runner.parse_params(pairs or [])}


def _run_dir(run: str, config: Path | None) -> Path:
    run_dir = load_settings(config, {"run_name": run}).run_dir
    if not run_dir.is_dir():
        raise InputError(f"no such run: {run_dir}")
    return run_dir


@app.command(cls=_PairsCommand)
def run(
    run: Annotated[str, typer.Argument(help="Run name; outputs go to <output_dir>/<run>/.")],
    config: ConfigOpt = None,
    param: ParamOpt = None,
    params_file: ParamsFileOpt = None,
    start: Annotated[str | None, typer.Option("--from", help="First stage (number or name).")] = None,
    stop: Annotated[str | None, typer.Option("--to", help="Last stage (number or name).")] = None,
    resume: Annotated[bool, typer.Option(help="Skip stages already complete; rerun partial ones.")] = False,
    sweep: Annotated[Path | None, typer.Option(help="YAML list/grid of parameter sets.")] = None,
    notebooks: NotebooksOpt = Path("notebooks"),
) -> None:
    """Execute the numbered notebooks in order with papermill; executed copies go to <run>/notebooks/."""
    with _user_errors():
        catalog = runner.discover(notebooks)
        selected = runner.select(catalog, start, stop)
        params = _params(params_file, param)
        if sweep:
            _run_sweep(run, catalog, selected, config, params, sweep, resume)
            return
        if resume:
            saved_config, saved_params = runner.saved_invocation(
                runner.RunPlan(run, selected, config, params, catalog).run_dir
            )
            config, params = config or saved_config, {**saved_params, **params}
        plan = runner.RunPlan(run, selected, config, params, catalog)
        plan.routed  # noqa: B018 -- validate every parameter before the first notebook starts
        runner.execute(plan, resume=resume, echo=typer.echo)
        typer.echo(f"run '{run}' done: {plan.run_dir}")


def _run_sweep(
    base: str,
    catalog: list[runner.Notebook],
    selected: list[runner.Notebook],
    config: Path | None,
    params: dict[str, Any],
    sweep: Path,
    resume: bool,
) -> None:
    """Validate every run of the sweep, execute them one by one, then print and save the comparison."""
    runs = load_sweep(sweep, base)
    plans = [runner.RunPlan(r.name, selected, config, {**params, **r.params}, catalog) for r in runs]
    for plan in plans:
        plan.settings  # noqa: B018 -- route and validate all runs before spending anything
    errors: dict[str, str] = {}
    for plan in plans:
        typer.echo(f"== {plan.run_name}")
        try:
            runner.execute(plan, resume=resume, echo=typer.echo)
        except (runner.StageFailed, GlanError) as exc:
            errors[plan.run_name] = str(exc)
            typer.echo(f"glan: {exc}", err=True)
    output_dir = Path(plans[0].settings.output_dir)
    table = comparison(runs, output_dir, errors)
    csv = output_dir / f"{base}-sweep.csv"
    table.to_csv(csv, index=False)
    typer.echo(markdown_table(table))
    typer.echo(f"comparison saved to {csv}")
    if errors:
        raise typer.Exit(1)


@app.command()
def status(run: str, config: ConfigOpt = None, notebooks: NotebooksOpt = Path("notebooks")) -> None:
    """Per stage: done/pending/failed, record counts and cost so far."""
    with _user_errors():
        run_dir = _run_dir(run, config)
        table = run_table(run_dir)
        if notebooks.is_dir():
            pending = [nb.stem for nb in runner.discover(notebooks) if nb.stem not in set(table["stage"])]
            pending_rows = pd.DataFrame({"stage": pending, "status": "pending"})
            table = pd.concat([table, pending_rows], ignore_index=True)
        typer.echo(markdown_table(table))
        typer.echo(f"total: {totals_line(run_dir)}")


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
    what they kept, so the estimate after a stage is exact for the next.
    """
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
            table = _estimate_table(pipeline, settings, read_run=run is not None)
        typer.echo(markdown_table(table))
        pairs = int(table.loc[table["stage"] == "answers", "outputs"].sum())
        typer.echo(
            f"total: {table['calls'].sum():,} calls, {pairs:,} pairs, {table['prompt_tokens'].sum():,} prompt + "
            f"{table['completion_tokens'].sum():,} completion tokens, ~${table['cost_usd'].sum():,.2f}"
        )


def _estimate_table(pipeline: Any, settings: Any, read_run: bool) -> pd.DataFrame:
    """One row per stage: its plan, where its input count came from, tokens and dollars."""
    rows = []
    for stage, planned in pipeline.stage_plans(settings, read_run).items():
        est = pipeline.estimate_plan(settings, stage, planned.plan.calls)
        rows.append(
            {
                "stage": stage,
                "inputs": planned.inputs,
                "inputs_from": planned.inputs_from,
                "calls": est.calls,
                "outputs": planned.plan.outputs,
                "prompt_tokens": est.prompt_tokens,
                "completion_tokens": est.completion_tokens,
                "cost_usd": round(est.cost_usd, 2),
                "model": est.model,
            }
        )
    return pd.DataFrame(rows)


@app.command()
def report(
    run: str,
    config: ConfigOpt = None,
    show_code: Annotated[bool, typer.Option("--show-code/--hide-code", help="Include code cells.")] = False,
    out: Annotated[Path | None, typer.Option(help="HTML file to write (default <run>/report.html).")] = None,
) -> None:
    """One self-contained, offline HTML page: stage/cost table, config, data set card, notebooks' outputs."""
    with _user_errors():
        path = render_report(_run_dir(run, config), out, show_code=show_code)
        typer.echo(f"report written to {path}")
