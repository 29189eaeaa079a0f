"""Ray backend: shard a stage's tasks over a Ray cluster; the driver writes every result through the run store.

One event loop tops out near 1,000 / (client CPU ms per call) calls/s, so a paper-scale run (10M answers) spreads
the calls over processes and machines. Each Ray task takes a shard of pending tasks, opens the normal client
(`open_client`: cache, retries, ledger, endpoint pool) and runs `work(client, task)` for each; records and
failures come back to the driver, which appends them to `<stage>.jsonl` / `<stage>.failures.jsonl` as shards
finish. Resume is the same as `run_stage`: tasks that already have records are skipped. Workers share the
response cache and ledger through the run's paths, so on a multi-node cluster put `output_dir` and
`llm.cache_path` on a shared filesystem (or accept per-node caches: records still land only through the driver).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from glan_utils.core.errors import SetupError
from glan_utils.core.jsonl import JsonlWriter
from glan_utils.core.records import Failure, Record, utc_now
from glan_utils.runs.stage import StageSummary
from glan_utils.runs.store import RunStore
from glan_utils.settings import RaySettings, Settings

Work = Callable[[Any, Any], Awaitable["list[Record] | Failure"]]


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SetupError("the Ray backend needs ray: pip install 'ray[default]'") from None
    return ray


def _shard_worker(
    settings_data: dict[str, Any], stage: str, work: Work, shard: list[Any]
) -> list[tuple[str, list[Record] | Failure]]:
    """Runs inside a Ray worker: the normal client over one shard; returns (task id, result) pairs."""
    from glan_utils.llm.client import open_client

    settings = Settings.model_validate(settings_data)

    async def run() -> list[tuple[str, list[Record] | Failure]]:
        async with open_client(settings, stage=stage) as client:
            results = await asyncio.gather(*(work(client, task) for task in shard))
        return [(task.id, result) for task, result in zip(shard, results, strict=True)]

    return asyncio.run(run())


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _write(
    pairs: list[tuple[str, list[Record] | Failure]], out: JsonlWriter, failed_out: JsonlWriter, summary: StageSummary
) -> None:
    for task_id, result in pairs:
        if isinstance(result, Failure):
            summary.failed += 1
            summary.failures_by_reason[result.reason.split(":")[0][:60]] += 1
            failed_out.write(result.model_dump(mode="json"))
            continue
        for record in result:
            record.task_id = task_id
            out.write(record.model_dump(mode="json"))
        summary.records += len(result)


def _connect(ray: Any, config: RaySettings) -> int:
    """Join (or start) the cluster once per process; returns its CPU count."""
    if not ray.is_initialized():
        ray.init(
            address=config.address,
            num_cpus=config.num_cpus if config.address is None else None,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    return int(ray.cluster_resources().get("CPU", 1))


def run_stage_distributed(
    settings: Settings, stage: str, tasks: Iterable[Any], work: Work, config: RaySettings | None = None
) -> StageSummary:
    """Like `run_stage`, with shards of tasks done by Ray workers; returns the same summary.

    `work(client, task)` must be picklable (a module-level function or a `functools.partial` of one).
    """
    ray, config = _ray(), config or RaySettings()
    cpus = _connect(ray, config)
    store, summary = RunStore(settings.run_dir), StageSummary(stage)
    done = store.done_task_ids(stage)
    store.update_manifest(stage, status="running", started_at=utc_now().isoformat(), backend="ray")
    remote = ray.remote(_shard_worker)
    settings_ref = ray.put(settings.model_dump(mode="json"))
    limit = config.max_shards_in_flight or 2 * cpus

    def pending() -> Iterator[Any]:
        for task in tasks:
            summary.planned += 1
            if task.id in done:
                summary.skipped += 1
            else:
                yield task

    with store.writer(stage) as out, store.failure_writer(stage) as failed_out:
        in_flight: list[Any] = []
        for shard in _chunks(pending(), config.shard_size):
            if len(in_flight) >= limit:
                ready, in_flight = ray.wait(in_flight, num_returns=1)
                _write(ray.get(ready[0]), out, failed_out, summary)
            in_flight.append(remote.remote(settings_ref, stage, work, shard))
        while in_flight:
            ready, in_flight = ray.wait(in_flight, num_returns=1)
            _write(ray.get(ready[0]), out, failed_out, summary)
    store.update_manifest(stage, status=summary.status, finished_at=utc_now().isoformat(), **summary.as_dict())

    return summary
