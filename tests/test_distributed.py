"""The Ray backend on a local 2-CPU cluster against a loopback server: shards, driver-side writes, resume."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import pytest

from glan_utils.core.records import Failure, TaxonomyNode
from glan_utils.testing import OpenAIServer

ray = pytest.importorskip("ray")
from glan_utils.runs.distributed import RaySettings, run_stage_distributed  # noqa: E402

pytestmark = pytest.mark.timeout(180)


@dataclass(frozen=True)
class Task:
    n: int

    @property
    def id(self) -> str:
        return f"task-{self.n}"


async def name_it(client, task: Task):
    """Every tenth task fails without a call; the others make one call and return one record."""
    if task.n % 10 == 0:
        return Failure(stage="demo", reason="skipped on purpose: multiple of ten")
    result = await client.chat([{"role": "user", "content": f"name {task.n}"}])
    return [TaxonomyNode(name=f"{task.n}: {result.text[:20]}", level="discipline")]


@pytest.fixture(scope="module")
def cluster():
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as exc:  # the raylet gives its dashboard agent 15 s to start (ray-project/ray#65983)
        if "timed out during startup" not in str(exc):
            raise
        pytest.skip(
            "Ray's local node did not start in time on this machine (overloaded: its dashboard agent "
            "took more than the raylet's fixed 15 s to import)"
        )
    yield
    ray.shutdown()


def test_shards_run_on_workers_and_the_driver_writes_results(cluster, make_settings):
    with OpenAIServer(latency_s=0.01) as server:
        settings = make_settings(server.base_url, {"llm.concurrency": 4})
        config = RaySettings(shard_size=7)
        summary = run_stage_distributed(settings, "demo", [Task(n) for n in range(40)], name_it, config)
        assert (summary.records, summary.failed, summary.planned) == (36, 4, 40)
        assert server.count == 36
        rows = [json.loads(line) for line in (settings.run_dir / "demo.jsonl").read_text().splitlines()]
        assert sorted(r["task_id"] for r in rows) == sorted(f"task-{n}" for n in range(40) if n % 10)
        assert all(r["name"].split(":")[0] == r["task_id"].split("-")[1] for r in rows)
        manifest = json.loads((settings.run_dir / "manifest.json").read_text())["stages"]["demo"]
        assert manifest["status"] == "complete_with_failures" and manifest["backend"] == "ray"

        again = run_stage_distributed(settings, "demo", [Task(n) for n in range(40)], name_it, config)
        assert again.skipped == 36 and again.records == 0 and again.failed == 4
        assert server.count == 36  # done tasks are skipped, nothing is asked twice
