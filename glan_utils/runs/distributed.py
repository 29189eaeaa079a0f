"""Ray backend (`scale.backend: ray`): shard a stage's pending tasks over a Ray cluster, safely across machines.

One event loop tops out near 1,000 / (client CPU ms per call) calls/s, so a paper-scale run spreads the calls over
processes and machines. Each Ray task takes a shard of pending tasks and runs the normal client over it, but the
client's response cache and ledger are not files on the worker: they are a `DriverStore` actor pinned to the
driver's node, which owns the run's SQLite cache and `ledger.jsonl`. So a worker on another machine needs no
shared filesystem (SQLite over NFS is unsafe), every paid call lands in the driver's ledger once, and a shard
that Ray retries after its worker died finds the answers of the calls it had finished in the cache: it repays
nothing. Records and failures come back with the shard's result and the driver appends them through the run
store, so each lands exactly once. Resume is the same as `run_stage`: tasks that already have records are skipped.
The endpoint's API key reaches the workers as an argument of each shard task (inlined in the task, held in memory
by the cluster, printed as `***`), so a worker node without the variable still authenticates. Not through a runtime
environment's `env_vars`: Ray's runtime-env agent logs the serialized environment, variables included, to
`runtime_env_agent.log`. The key is never a setting, a file or a log line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glan_utils.core.errors import SetupError
from glan_utils.core.jsonl import JsonlWriter
from glan_utils.core.parallel import chunks
from glan_utils.core.paths import LEDGER
from glan_utils.core.records import Failure, Record, utc_now
from glan_utils.llm.cache import ResponseCache
from glan_utils.llm.ledger import Ledger, Totals
from glan_utils.runs.stage import StageSummary, write_result
from glan_utils.runs.store import RunStore
from glan_utils.settings import RaySettings, Settings, api_key

ClientWork = Callable[[Any, Any], Awaitable["list[Record] | Failure"]]  # work(client, task) on a Ray worker


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SetupError("the Ray backend needs ray: pip install 'ray[default]'") from None
    return ray


class DriverStore:
    """The run's cache and ledger, served to workers from the driver's node (a Ray actor; calls run in order)."""

    def __init__(self, cache_path: str, ledger_path: str) -> None:
        self.cache = ResponseCache(cache_path)
        self.ledger = JsonlWriter(Path(ledger_path))
        self.totals = Totals()

    def get(self, key: str) -> dict[str, Any] | None:
        return self.cache.get(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.cache.put(key, value)

    def record(self, lines: list[dict[str, Any]]) -> None:
        for line in lines:
            self.totals.add(line)
            self.ledger.write(line, defer=bool(line.get("cached")))

    def flush(self) -> Totals:
        self.ledger.flush()
        return self.totals


class RemoteCache:
    """The client's cache on a worker: asks the driver's store (the client awaits `aget`/`aput`)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def aget(self, key: str) -> dict[str, Any] | None:
        return await self.store.get.remote(key)

    async def aput(self, key: str, value: dict[str, Any]) -> None:
        await self.store.put.remote(key, value)  # awaited: a worker killed after this repays nothing

    def get(self, key: str) -> dict[str, Any] | None:  # pragma: no cover - the client uses aget
        raise NotImplementedError

    def close(self) -> None:
        pass


class RemoteLedger(Ledger):
    """Ledger lines sent to the driver's store: paid lines at once (before the reply is cached), hits in batches."""

    def __init__(self, store: Any, prices: Any) -> None:
        super().__init__(None, prices)
        self.store = store
        self._held: list[dict[str, Any]] = []

    def emit(self, line: dict[str, Any]) -> None:
        self.totals.add(line)
        self._held.append(line)
        if not line.get("cached") or len(self._held) >= 256:
            self.flush()

    def flush(self) -> None:
        if self._held:
            self.store.record.remote(self._held)  # ordered before the later put of the same worker
            self._held = []

    def close(self) -> None:
        self.flush()


@dataclass(frozen=True)
class Secret:
    """The driver's API key on its way to a worker; its repr never shows it."""

    value: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return "Secret(***)"


def _shard_worker(
    settings_data: dict[str, Any],
    stage: str,
    work: ClientWork,
    shard: list[Any],
    store: Any,
    key: Secret = Secret(),
) -> list[tuple[str, list[Record] | Failure]]:
    """Runs inside a Ray worker: the normal client over one shard, cache and ledger at the driver."""
    from glan_utils.runs.client import run_client

    settings = Settings.model_validate(settings_data)
    ledger = RemoteLedger(store, settings.llm.prices)

    async def run() -> list[tuple[str, list[Record] | Failure]]:
        window = asyncio.Semaphore(settings.llm.concurrency)

        async def one(task: Any) -> list[Record] | Failure:
            async with window:
                return await work(client, task)

        async with run_client(settings, stage=stage, cache=RemoteCache(store), ledger=ledger, key=key.value) as client:
            results = await asyncio.gather(*(one(task) for task in shard))
        return [(task.id, result) for task, result in zip(shard, results, strict=True)]

    pairs = asyncio.run(run())
    _ray().get(store.flush.remote())  # every ledger line of the shard is written before its records come back
    return pairs


def _write_all(
    pairs: list[tuple[str, list[Record] | Failure]], out: JsonlWriter, failed_out: JsonlWriter, summary: StageSummary
) -> None:
    for task_id, result in pairs:
        write_result(task_id, result, out, failed_out, summary)


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


def _driver_store(ray: Any, settings: Settings) -> Any:
    """The DriverStore actor, on this (the driver's) node, over the run's own cache and ledger paths."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(num_cpus=0, scheduling_strategy=here)(DriverStore)
    return actor.remote(str(settings.cache_file.resolve()), str((settings.run_dir / LEDGER).resolve()))


def run_stage_distributed(
    settings: Settings, stage: str, tasks: Iterable[Any], work: ClientWork, config: RaySettings | None = None
) -> tuple[StageSummary, Totals]:
    """Like `run_stage`, with shards of tasks done by Ray workers; returns the summary and the shards' LLM totals.

    `work(client, task)` must be picklable (a module-level function or a `functools.partial` of one).
    """
    ray, config = _ray(), config or RaySettings()
    cpus = _connect(ray, config)
    store, summary = RunStore(settings.run_dir), StageSummary(stage)
    done = store.done_task_ids(stage)
    store.update_manifest(stage, status="running", started_at=utc_now().isoformat(), backend="ray")
    driver = _driver_store(ray, settings)
    remote = ray.remote(_shard_worker)
    key = Secret(api_key(settings.llm))  # the workers' environment may lack the variable
    # workers resolve no path of their own: the store actor holds the driver's files
    settings_ref = ray.put(
        settings.model_copy(update={"output_dir": str(Path(settings.output_dir).resolve())}).model_dump(mode="json")
    )
    limit = config.max_shards_in_flight or 2 * cpus

    def pending() -> Iterator[Any]:
        for task in tasks:
            summary.planned += 1
            if task.id in done:
                summary.skipped += 1
            else:
                yield task

    try:
        with store.writer(stage) as out, store.failure_writer(stage) as failed_out:
            in_flight: list[Any] = []
            for shard in chunks(pending(), config.shard_size):
                if len(in_flight) >= limit:
                    ready, in_flight = ray.wait(in_flight, num_returns=1)
                    _write_all(ray.get(ready[0]), out, failed_out, summary)
                in_flight.append(remote.remote(settings_ref, stage, work, shard, driver, key))
            while in_flight:
                ready, in_flight = ray.wait(in_flight, num_returns=1)
                _write_all(ray.get(ready[0]), out, failed_out, summary)
        totals = ray.get(driver.flush.remote())
    finally:
        ray.kill(driver)
    store.update_manifest(stage, status=summary.status, finished_at=utc_now().isoformat(), **summary.as_dict())
    return summary, totals
