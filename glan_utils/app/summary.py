"""A run at a glance, cheaply: per-stage status, records, failures, calls and cost, and the run's totals.

`glan status` and the closing line of `glan run` need only this module: it reads the manifest, the ledger and
file sizes, and imports neither the stages (model clients), the report's exporters nor pandas (`run_rows` are
plain dicts; `run_table` makes the DataFrame the report and sweeps use), so status costs ~0.4 s of CPU.
The HTML report (`app/report.py`) shows the same table.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from glan_utils.core.errors import InputError
from glan_utils.core.paths import LEDGER
from glan_utils.core.stale import stale_stages
from glan_utils.llm.ledger import read_ledger
from glan_utils.runs.store import RunStore, is_alive

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = [
    "stage", "status", "records", "failed", "failures_by_reason", "outside_plan", "calls", "cache_hits",
    "call_failures", "tokens", "cost_usd",
]  # fmt: skip


def existing(run_dir: str | Path) -> Path:
    """The run directory, which must exist (RunStore would create it)."""
    if not Path(run_dir).is_dir():
        raise InputError(f"no such run: {run_dir}")
    return Path(run_dir)


def _line_count(path: Path) -> int | None:
    if not path.exists():
        return None
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def _status(info: dict[str, Any], stale: str | None = None) -> str:
    """The manifest's status, except that a `running` stage whose process is gone was interrupted, and a
    complete one whose inputs changed since is stale."""
    status = info.get("status", "-")
    if stale:
        return f"stale ({stale})"
    return "interrupted (process gone)" if status == "running" and not is_alive(info) else status


def _reasons(counts: dict[str, int]) -> str | None:
    """A stage's failures by reason, most frequent first: `refused (HTTP 400 context_length_exceeded) x3; ...`."""
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    return "; ".join(f"{reason} x{n}" for reason, n in ranked) or None


def run_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """One row per stage (notebooks and generation stages): status, records, failures (by reason), calls, tokens, cost.

    Records are lines of `<stage>.jsonl` (cheap at any size); call figures come from the cost ledger. A stage
    the manifest calls `running` whose recorded process no longer exists shows as interrupted; a complete one
    whose inputs changed since it ran (a saved review, an earlier stage rerun) shows as stale. `outside_plan`
    counts records on disk that the current plan no longer has (e.g. after lowering `questions_per_syllabus`).
    Plain dicts, so `glan status` needs no pandas.
    """
    store = RunStore(existing(run_dir))
    stages = store.read_manifest().get("stages", {})
    stale = stale_stages(store.root)
    ledger = read_ledger(store.path(LEDGER))
    rows = []
    for name in [*stages, *(s for s in ledger if s not in stages and s != "all")]:
        info, spent = stages.get(name, {}), ledger.get(name)
        rows.append(
            {
                "stage": name,
                "status": _status(info, stale.get(name)),
                "records": _line_count(store.records_path(name)),
                "failed": info.get("failed"),
                "failures_by_reason": _reasons(info.get("failures_by_reason") or {}),
                "outside_plan": info.get("outside_plan"),
                "calls": spent.calls if spent else None,
                "cache_hits": spent.cached if spent else None,
                "call_failures": spent.failed if spent else None,
                "tokens": spent.prompt_tokens + spent.completion_tokens if spent else None,
                "cost_usd": round(spent.cost_usd, 4) if spent else None,
            }
        )
    return rows


def run_table(run_dir: str | Path) -> pd.DataFrame:
    """`run_rows` as a DataFrame (counts as nullable integers), for the report, sweeps and notebooks."""
    import pandas as pd

    table = pd.DataFrame(run_rows(run_dir), columns=COLUMNS)
    counts = ["records", "failed", "outside_plan", "calls", "cache_hits", "call_failures", "tokens"]
    return table.astype(dict.fromkeys(counts, "Int64"))


def rows_markdown(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows as a markdown table (None as empty), with tabulate alone: no pandas."""
    from tabulate import tabulate

    if not rows:
        return "_nothing recorded yet_"
    body = [["" if row.get(c) is None else row.get(c) for c in columns] for row in rows]
    return tabulate(body, headers=columns, tablefmt="pipe")


def run_totals(run_dir: str | Path) -> dict[str, Any]:
    """Whole-run ledger totals: calls, cache hits, failed calls, tokens and dollars."""
    total = read_ledger(Path(run_dir) / LEDGER)["all"]
    return {
        "calls": total.calls,
        "cache_hits": total.cached,
        "call_failures": total.failed,
        "tokens": total.prompt_tokens + total.completion_tokens,
        "cost_usd": round(total.cost_usd, 4),
    }


def totals_line(run: str | Path | dict[str, Any]) -> str:
    """Ledger totals in one sentence: a run's (its directory), or totals as `run_totals` gives them."""
    t = run if isinstance(run, dict) else run_totals(run)
    return (
        f"{t['calls']:,} model calls, {t['cache_hits']:,} cache hits, {t['call_failures']:,} failed, "
        f"{t['tokens']:,} tokens, ${t['cost_usd']:,.4f}"
    )


def markdown_table(table: pd.DataFrame) -> str:
    if not len(table):
        return "_nothing recorded yet_"
    return table.astype(object).where(table.notna(), "").to_markdown(index=False)
