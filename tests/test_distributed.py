"""The Ray backend on a real two-node cluster (a head and a worker node started as separate `ray start` processes,
each from its own working directory) against a loopback server: records, cache and ledger land at the driver
exactly once, and a worker killed mid-shard loses nothing and repays nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from glan_utils.core.errors import SetupError
from glan_utils.core.records import Failure, TaxonomyNode
from glan_utils.llm.ledger import read_ledger
from glan_utils.settings import load_settings
from glan_utils.testing import OpenAIServer

ray = pytest.importorskip("ray")
from glan_utils.runs.distributed import RaySettings, run_stage_distributed  # noqa: E402

pytestmark = pytest.mark.timeout(300)
RAY = Path(sys.executable).with_name("ray")


@dataclass(frozen=True)
class Task:
    n: int
    kill_marker: str = ""

    @property
    def id(self) -> str:
        return f"task-{self.n}"


async def name_it(client, task: Task):
    """Every tenth task fails without a call; the others make one call and return one record.

    A task with a kill marker SIGKILLs its worker the first time it runs (the marker says it happened).
    """
    if task.kill_marker and not os.path.exists(task.kill_marker):
        Path(task.kill_marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    if task.n % 10 == 0:
        return Failure(stage="demo", reason="skipped on purpose: multiple of ten")
    result = await client.chat([{"role": "user", "content": f"name {task.n}"}])
    return [TaxonomyNode(name=f"{task.n}: {result.text[:20]}", level="discipline")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray_node(cwd: Path, *args: str) -> subprocess.Popen[bytes]:
    """`ray start --block` from its own working directory; its output goes to `ray.log` there."""
    cwd.mkdir(parents=True, exist_ok=True)
    env = {  # token auth off: the nodes and this driver share no token file (a loopback test cluster)
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    with open(cwd / "ray.log", "wb") as log:
        return subprocess.Popen(
            [str(RAY), "start", "--block", "--disable-usage-stats", *args],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _exited(proc: subprocess.Popen[bytes], cwd: Path) -> None:
    """A node whose `ray start` exited is a broken command, not a slow machine: fail with its last lines."""
    if proc.poll() is not None:
        tail = (cwd / "ray.log").read_text(errors="replace").splitlines()[-5:]
        pytest.fail(f"`ray start` in {cwd.name} exited with {proc.returncode}: " + " | ".join(tail))


@dataclass(frozen=True)
class Cluster:
    root: Path  # the head's and the worker's working directories are root/head and root/worker
    address: str
    temp: Path  # Ray's session files and logs


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    os.environ["RAY_AUTH_MODE"] = "disabled"
    root = tmp_path_factory.mktemp("ray")
    port, ip = _free_port(), ray.util.get_node_ip_address()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    head_args = ["--head", "--include-dashboard=false", f"--port={port}", "--num-cpus=0", f"--temp-dir={temp}"]
    head = _ray_node(root / "head", *head_args)
    worker = None
    try:
        deadline = time.monotonic() + 150
        while not Path(temp, "ray_current_cluster").exists():  # written once the head is up
            _exited(head, root / "head")
            if time.monotonic() > deadline:
                pytest.skip("the Ray head node did not start in time on this machine")
            time.sleep(0.5)
        worker = _ray_node(root / "worker", f"--address={ip}:{port}", "--num-cpus=2")
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
        while True:
            _exited(worker, root / "worker")
            try:
                ray.init(address=f"{ip}:{port}", log_to_driver=False, configure_logging=False)
                if ray.cluster_resources().get("CPU", 0) >= 2:
                    break
                ray.shutdown()
            except Exception:
                if time.monotonic() > deadline:
                    pytest.skip("the local two-node Ray cluster did not start in time on this machine")
            time.sleep(2)
            if time.monotonic() > deadline:
                pytest.skip("the Ray worker node did not join in time on this machine")
        yield Cluster(root, f"{ip}:{port}", Path(temp))
    finally:
        ray.shutdown()
        for proc in (worker, head):  # only the nodes this fixture started, each by its own process group
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def _settings(root: Path, base_url: str, **more):
    return load_settings(
        None,
        {
            "output_dir": "outputs",  # relative: the driver's working directory, which the workers do not share
            "llm.base_url": base_url,
            "llm.model": "fake-model",
            "llm.timeout_s": 5,
            "llm.retry_max_wait_s": 0.2,
            **more,
        },
        environ={},
    )


def _ids(run_dir: Path) -> list[str]:
    return sorted(json.loads(line)["id"] for line in (run_dir / "demo.jsonl").read_text().splitlines())


def test_shards_on_another_node_land_once_at_the_driver_like_a_single_process_run(
    cluster, tmp_path, monkeypatch, openai_server
):
    from glan_utils.core.aio import run
    from glan_utils.runs.client import run_client
    from glan_utils.runs.stage import run_stage
    from glan_utils.runs.store import RunStore

    tasks = [Task(n) for n in range(40)]
    (tmp_path / "single").mkdir()
    monkeypatch.chdir(tmp_path / "single")
    single = _settings(tmp_path, openai_server.base_url)

    async def local():
        async with run_client(single, stage="demo") as client:
            await run_stage(RunStore(single.run_dir), "demo", tasks, lambda t: name_it(client, t), concurrency=4)

    run(local())
    openai_server.reset_stats()
    (tmp_path / "driver").mkdir()
    monkeypatch.chdir(tmp_path / "driver")
    settings = _settings(tmp_path, openai_server.base_url, **{"llm.concurrency": 4})
    summary, totals = run_stage_distributed(settings, "demo", tasks, name_it, RaySettings(shard_size=7))
    assert (summary.records, summary.failed, summary.planned) == (36, 4, 40)
    assert _ids(tmp_path / "driver" / settings.run_dir) == _ids(tmp_path / "single" / single.run_dir)
    ledger = read_ledger(tmp_path / "driver" / settings.run_dir / "ledger.jsonl")["all"]
    assert ledger.calls == openai_server.count == totals.calls == 36  # every paid line at the driver, once
    worker_dir = cluster.root / "worker"
    assert not list(worker_dir.rglob("*.sqlite")) and not list(worker_dir.rglob("ledger.jsonl"))
    manifest = json.loads((tmp_path / "driver" / settings.run_dir / "manifest.json").read_text())["stages"]["demo"]
    assert manifest["status"] == "complete_with_failures" and manifest["backend"] == "ray"

    again, _ = run_stage_distributed(settings, "demo", tasks, name_it, RaySettings(shard_size=7))
    assert again.skipped == 36 and again.records == 0 and again.failed == 4
    assert openai_server.count == 36  # done tasks are skipped, nothing is asked twice


def test_a_worker_killed_mid_shard_loses_nothing_and_repays_nothing(cluster, tmp_path, monkeypatch, openai_server):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "killed"
    tasks = [Task(n, kill_marker=str(marker) if n == 12 else "") for n in range(21)]
    # one call at a time, so the kill lands between calls: the shard's first calls (7..11) were paid and cached
    settings = _settings(tmp_path, openai_server.base_url, **{"llm.concurrency": 1})
    summary, _ = run_stage_distributed(settings, "demo", tasks, name_it, RaySettings(shard_size=7))
    assert marker.exists(), "the worker was not killed"
    assert (summary.records, summary.failed) == (18, 3)
    assert len(_ids(settings.run_dir)) == 18  # the retried shard's records land once
    ledger = read_ledger(settings.run_dir / "ledger.jsonl")["all"]
    assert openai_server.count == ledger.calls == 18  # nothing asked twice, every paid call in the ledger
    assert ledger.cached >= 4  # the retry found the killed shard's answers in the driver's cache


async def test_a_settings_file_with_scale_backend_ray_runs_the_pipeline_on_the_cluster(
    cluster, tmp_path, monkeypatch, openai_server
):
    """`scale.backend: ray` in a settings file: every stage's records match an in-process run of the same file."""
    from glan_utils.stages import pipeline

    def records(run_dir: Path) -> dict[str, list[str]]:
        return {
            stage: sorted(json.loads(line)["id"] for line in (run_dir / f"{stage}.jsonl").read_text().splitlines())
            for stage in ("subjects", "syllabi", "questions", "answers")
        }

    runs = {}
    for backend in ("local", "ray"):
        (tmp_path / backend).mkdir()
        monkeypatch.chdir(tmp_path / backend)
        config = Path("settings.yaml")
        config.write_text(
            (Path(__file__).parents[1] / "configs" / "test.yaml").read_text()
            + f"llm.base_url: {openai_server.base_url}\noutput_dir: outputs\nrun_name: r\n"
            + f"scale:\n  backend: {backend}\n  address: {cluster.address}\n  shard_size: 3\n"
        )
        settings = load_settings(config, environ={})
        openai_server.reset_stats()
        await pipeline.run_until(settings, "answers")
        runs[backend] = (records(settings.run_dir.resolve()), openai_server.count, settings.run_dir.resolve())
    (local, local_calls, _), (ray_records, ray_calls, ray_dir) = runs["local"], runs["ray"]
    assert ray_records == local and all(local.values())  # the same ids, stage by stage, none empty
    assert ray_calls == local_calls
    manifest = json.loads((ray_dir / "manifest.json").read_text())["stages"]
    assert manifest["questions"]["backend"] == "ray" and manifest["answers"]["backend"] == "ray"
    assert read_ledger(ray_dir / "ledger.jsonl")["all"].calls == ray_calls  # every paid call at the driver


def test_a_worker_without_the_key_variable_authenticates(cluster, tmp_path, monkeypatch):
    """The nodes started without the key's variable; only the driver has it. Every call is authenticated, and the
    key is in no file of the nodes (logs and session files included)."""
    key = "sk-test-ray-7f3a9c51e2"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GLAN_RAY_TEST_KEY", key)
    assert "GLAN_RAY_TEST_KEY" not in (cluster.root / "worker" / "ray.log").read_text(errors="replace")
    with OpenAIServer(models=["fake-model"], api_key=key) as server:
        settings = _settings(tmp_path, server.base_url, **{"llm.api_key_env": "GLAN_RAY_TEST_KEY"})
        summary, _ = run_stage_distributed(settings, "demo", [Task(n) for n in range(1, 9)], name_it)
        assert (summary.records, summary.failed) == (8, 0) and server.count == 8
    leaked = [
        path
        for folder in (cluster.root, cluster.temp)
        for path in folder.rglob("*")
        if path.is_file() and key.encode() in path.read_bytes()
    ]
    assert leaked == []


class _Done:
    """An already-finished ObjectRef: awaitable, and what `ray.get` returns."""

    def __init__(self, value):
        self.value = value

    def __await__(self):
        yield from ()
        return self.value


class _InProcessActor:
    """A DriverStore handle whose `.method.remote(...)` runs in this process, in call order, as an actor would."""

    def __init__(self, store):
        for name in ("get", "put", "record", "flush"):
            method = getattr(store, name)
            setattr(self, name, type("M", (), {"remote": staticmethod(lambda *a, m=method: _Done(m(*a)))})())


def test_a_shard_keeps_its_cache_and_ledger_at_the_driver_store_only(tmp_path, monkeypatch, openai_server):
    """Without a cluster: the shard worker's calls go to the driver store, and a rerun of the shard pays nothing."""
    import glan_utils.runs.distributed as distributed

    monkeypatch.setattr(distributed, "_ray", lambda: type("R", (), {"get": staticmethod(lambda ref: ref.value)})())
    store = distributed.DriverStore(str(tmp_path / "driver" / "cache.sqlite"), str(tmp_path / "driver" / "l.jsonl"))
    worker_side = _settings(tmp_path, openai_server.base_url, output_dir=str(tmp_path / "worker"))
    shard = [Task(n) for n in range(12)]
    for _ in range(2):  # the second time is a retried shard: all answers are in the driver's cache
        pairs = distributed._shard_worker(
            worker_side.model_dump(mode="json"), "demo", name_it, shard, _InProcessActor(store)
        )
        assert [task_id for task_id, _ in pairs] == [t.id for t in shard]
    totals = store.flush()
    assert openai_server.count == totals.calls == 10 and totals.cached == 10 and len(store.cache) == 10
    assert not (tmp_path / "worker").exists()  # the worker wrote no cache, ledger or run dir of its own
    assert len((tmp_path / "driver" / "l.jsonl").read_text().splitlines()) == 20


def test_a_shard_gets_the_drivers_key_as_a_secret_argument(tmp_path, monkeypatch):
    """Without a cluster: a worker process whose environment lacks the key's variable authenticates with the key
    the driver passed, and the argument never prints it."""
    import glan_utils.runs.distributed as distributed

    key = "sk-test-shard-5be1"
    monkeypatch.setattr(distributed, "_ray", lambda: type("R", (), {"get": staticmethod(lambda ref: ref.value)})())
    monkeypatch.delenv("GLAN_RAY_TEST_KEY", raising=False)
    store = distributed.DriverStore(str(tmp_path / "cache.sqlite"), str(tmp_path / "l.jsonl"))
    secret = distributed.Secret(key)
    assert key not in repr(secret) and key not in repr((1, secret))
    assert ray.cloudpickle.loads(ray.cloudpickle.dumps(secret)).value == key  # what Ray ships to the worker
    with OpenAIServer(models=["fake-model"], api_key=key) as server:
        settings = _settings(tmp_path, server.base_url, **{"llm.api_key_env": "GLAN_RAY_TEST_KEY"})
        shard = [Task(n) for n in range(1, 4)]
        pairs = distributed._shard_worker(
            settings.model_dump(mode="json"), "demo", name_it, shard, _InProcessActor(store), secret
        )
        assert all(isinstance(result, list) for _, result in pairs) and server.count == 3
        with pytest.raises(SetupError, match="authentication failed"):  # the same shard without the key
            distributed._shard_worker(settings.model_dump(mode="json"), "demo", name_it, shard, _InProcessActor(store))
