"""Run a stage's units of work concurrently, stream results to the run store, and resume where a run stopped.

A stage is a lazy iterable of tasks (each with a stable `id`) and an async `work(task)` that returns records or a
`Failure`. Tasks whose id already has records are skipped, so a killed run continues where it stopped; each record
is appended the moment it exists, so a kill loses at most calls in flight (and those are in the response cache).
Only a bounded window of tasks is in memory at once, however long the stage.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tqdm.auto import tqdm
from tqdm.notebook import tqdm as notebook_tqdm

from glan_utils.core.errors import SetupError
from glan_utils.core.jsonl import JsonlWriter
from glan_utils.core.records import Failure, Record, utc_now
from glan_utils.llm.refusals import REFUSED
from glan_utils.runs.store import RunStore


class Task(Protocol):
    """Anything with a stable id naming one unit of work."""

    @property
    def id(self) -> str: ...


Work = Callable[[Any], Awaitable["list[Record] | Failure"]]
PROGRESS_S = 2.0  # how often a running stage writes its counts to the manifest


class _NotebookBar(notebook_tqdm):
    """The notebook bar, shown under a display id so that closing it also rewrites its saved text.

    A widget's text fallback is fixed when it is first displayed ("0%"); an executed notebook, the HTML report
    and any viewer without widget state show that text. Updating the display on close saves the final count.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, display=False, **kwargs)
        self._shown = None
        if not self.disable:
            from IPython.display import display

            self._shown = display(self.container, display_id=True)

    def close(self) -> None:
        super().close()
        if self._shown is not None:
            self._shown.update(self.container)
            self._shown = None


def progress_bar(total: int | None, desc: str) -> tqdm:
    """A tasks progress bar: a widget in a notebook (whose saved text ends at the final count), text elsewhere."""
    bar = _NotebookBar if issubclass(tqdm, notebook_tqdm) else tqdm
    return bar(total=total, desc=desc, unit="task", dynamic_ncols=True)


@dataclass
class StageSummary:
    """What a stage run did; shown in notebooks and written to the manifest."""

    stage: str
    planned: int = 0
    skipped: int = 0
    records: int = 0
    failed: int = 0
    failures_by_reason: Counter[str] = field(default_factory=Counter)
    # the first failure's reason while every failure has its kind ("" once two kinds differ): a stage whose every
    # call was refused the same way (same status and code, e.g. `refused (HTTP 404 model_not_found)`)
    only_reason: str | None = field(default=None, repr=False)

    @property
    def status(self) -> str:
        """One vocabulary for every manifest: running, complete, complete_with_failures, stopped, interrupted."""
        return "complete" if self.failed == 0 else "complete_with_failures"

    def as_dict(self) -> dict[str, Any]:
        return {
            "planned": self.planned,
            "skipped_done": self.skipped,
            "records_written": self.records,
            "failed": self.failed,
            "failures_by_reason": dict(self.failures_by_reason),
        }


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0][:60]


def _refused_alike(summary: StageSummary) -> SetupError | None:
    """A stage that made nothing because every call was refused the same way (same status and code, messages
    may differ) has a setup error, however few its calls (the client's check needs `llm.refusal_check_calls`
    identical ones): a model or window that takes none of the stage's requests."""
    reason = summary.only_reason or ""
    if summary.records or summary.skipped or not reason.startswith(REFUSED):
        return None
    return SetupError(f"{summary.stage}: all {summary.failed} calls were {reason}")


def write_result(
    task_id: str, result: list[Record] | Failure, out: JsonlWriter, failed_out: JsonlWriter, summary: StageSummary
) -> None:
    """Append one task's records (stamped with its id, for resume) or its failure, and count it: the one writer
    of stage results, in-process and for Ray shards alike."""
    if isinstance(result, Failure):
        summary.failed += 1
        summary.failures_by_reason[_reason_kind(result.reason)] += 1
        first = summary.only_reason
        alike = first is None or (bool(first) and _reason_kind(first) == _reason_kind(result.reason))
        summary.only_reason = (first or result.reason) if alike else ""
        failed_out.write(result.model_dump(mode="json"))
        return
    for record in result:
        record.task_id = task_id
        out.write(record.model_dump(mode="json"))
    summary.records += len(result)


def record_all_done(store: RunStore, stage: str, planned: int) -> StageSummary:
    """The summary of a stage whose `planned` tasks all have records, in the manifest as `run_stage` writes it:
    a fully cached rerun reads each stage's tasks once (to see they are done), not a second time to skip them."""
    summary = StageSummary(stage, planned=planned, skipped=planned)
    now = utc_now().isoformat()
    store.update_manifest(stage, status=summary.status, started_at=now, finished_at=now, **summary.as_dict())
    return summary


async def run_stage(
    store: RunStore,
    stage: str,
    tasks: Iterable[Any],
    work: Work,
    *,
    concurrency: int,
    total: int | None = None,
    desc: str | None = None,
) -> StageSummary:
    """Do every task not yet done; append records and failures as they arrive; return a summary."""
    summary = StageSummary(stage)
    done = store.done_task_ids(stage)
    store.update_manifest(stage, status="running", started_at=utc_now().isoformat())
    window = asyncio.Semaphore(max(2 * concurrency, 1))
    progress = progress_bar(total, desc or stage)
    reported = [time.monotonic()]

    def report_progress() -> None:
        """Every PROGRESS_S, the counts in the manifest: what `glan run`'s ticker prints while the stage runs."""
        if time.monotonic() - reported[0] >= PROGRESS_S:
            reported[0] = time.monotonic()
            store.update_manifest(stage, progress={"done": progress.n, "total": total, "failed": summary.failed})

    with store.writer(stage) as out, store.failure_writer(stage) as failed_out:

        def keep(task: Any, result: list[Record] | Failure) -> None:
            write_result(task.id, result, out, failed_out, summary)
            progress.set_postfix(failed=summary.failed, refresh=False)

        async def one(task: Any) -> None:
            try:
                keep(task, await work(task))
            except Exception as exc:  # bad key, full disk, a bug: stop scheduling, keep what is written
                errors.append(exc)
            finally:
                window.release()
                progress.update(1)
                report_progress()

        pending: set[asyncio.Task[None]] = set()
        errors: list[Exception] = []
        try:
            for task in tasks:
                summary.planned += 1
                if task.id in done:
                    summary.skipped += 1
                    progress.update(1)
                    continue
                await window.acquire()
                if errors:
                    window.release()
                    break
                job = asyncio.create_task(one(task))
                pending.add(job)
                job.add_done_callback(pending.discard)
            if pending:
                await asyncio.gather(*pending)
            if not errors and (refusal := _refused_alike(summary)):
                errors.append(refusal)
        except (asyncio.CancelledError, KeyboardInterrupt):  # Ctrl-C, SIGTERM, a cancelled notebook cell
            store.update_manifest(stage, status="interrupted", **summary.as_dict())
            raise
        finally:
            for job in pending:
                job.cancel()
            progress.close()
    if errors:  # an error may name its own status, e.g. "stopped: budget" (a resume with a higher cap continues)
        status = getattr(errors[0], "manifest_status", "stopped")
        store.update_manifest(stage, status=status, error=str(errors[0])[:300], **summary.as_dict())
        raise errors[0]
    store.update_manifest(stage, status=summary.status, finished_at=utc_now().isoformat(), **summary.as_dict())
    return summary
