"""The `glan` command: run the notebooks as a batch job, sweep parameters, check status, estimate, report.

Every user error (bad parameter, bad config, missing run) is one line on stderr and exit code 2; a notebook
that raises is one line naming the stage and the saved notebook, and exit code 1.
"""

from __future__ import annotations

import importlib
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
def estimate(config: ConfigOpt = None, param: ParamOpt = None, params_file: ParamsFileOpt = None) -> None:
    """Calls, tokens and cost of a planned run, per stage, before spending anything (settings keys only)."""
    with _user_errors():
        settings = load_settings(config, _params(params_file, param))
        try:
            pipeline = importlib.import_module("glan_utils.stages.pipeline")
        except ModuleNotFoundError:
            raise SetupError("estimates need glan_utils.stages.pipeline, which is not installed") from None
        rows = []
        for stage in pipeline.STAGES:
            est = pipeline.estimate_stage(settings, stage)
            rows.append(
                {
                    "stage": stage,
                    "calls": est.calls,
                    "prompt_tokens": est.prompt_tokens,
                    "completion_tokens": est.completion_tokens,
                    "cost_usd": round(est.cost_usd, 4),
                    "model": est.model,
                }
            )
        table = pd.DataFrame(rows)
        typer.echo(markdown_table(table))
        typer.echo(f"total: {table['calls'].sum():,} calls, ~${table['cost_usd'].sum():,.2f}")


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


@app.command()
def batches(
    run: str,
    config: ConfigOpt = None,
    cancel: Annotated[bool, typer.Option("--cancel", help="Cancel every unfinished batch of the run.")] = False,
) -> None:
    """Batch API jobs of a run (`llm.mode: batch`), per stage: submitted / running / done / failed and an ETA."""
    from glan_utils.core.aio import run as run_async
    from glan_utils.llm.batch import batch_status, cancel_batches
    from glan_utils.llm.client import open_client

    with _user_errors():
        run_dir = _run_dir(run, config)
        states = sorted((run_dir / "batches").glob("*.sqlite"))
        if not states:
            raise InputError(f"run '{run}' has no Batch API jobs ({run_dir / 'batches'} is empty)")
        if cancel:
            settings = load_settings(config, {"run_name": run})
            if settings.llm.base_url is None:
                raise SetupError("cancelling batches needs llm.base_url (the Batch API endpoint)")

            async def cancel_all() -> list[str]:
                async with open_client(settings, check=False) as client:
                    return [i for path in states for i in await cancel_batches(client, path)]

            typer.echo(f"cancel requested for {len(run_async(cancel_all()))} batches (partial output is kept)")
        rows = [{"stage": path.stem, **batch_status(path)} for path in states]
        typer.echo(markdown_table(pd.DataFrame(rows)))
