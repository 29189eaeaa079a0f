"""Batch API mode (`llm.mode: batch`) against the fake server's Files + Batches endpoints, which behave as the real
API does: dated model names, out-of-order lines, error files, expiry with partial output, size and token limits.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from pydantic import BaseModel, Field
from support.reliability import pipeline_overrides, record_ids, run_pipeline, settings_for

from glan_utils.core.aio import run
from glan_utils.llm.batch import BatchError, batch_mode, batch_status, cancel_batches, plan_pass
from glan_utils.llm.ledger import read_ledger
from glan_utils.runs.client import run_client
from glan_utils.settings import BatchSettings
from glan_utils.testing import OpenAIServer

DRIVER = Path(__file__).parent / "support" / "pipeline_driver.py"
FAST = {"llm.mode": "batch", "batch.poll_interval_s": 0.05}
PRICED = {"llm.prices": {"fake-model": {"input_per_1m": 1e6, "output_per_1m": 1e6}}}  # $1 a token


class Topic(BaseModel):
    name: str = Field(max_length=40)


def topics(client, n: int):
    """A plan over n toy tasks, each one structured call."""

    async def work(task: int):
        return await client.chat([{"role": "user", "content": f"topic {task}"}], schema=Topic, max_tokens=100)

    return work, (lambda: plan_pass(range(n), work, 4))


def _answered_bodies(server: OpenAIServer) -> Counter[str]:
    return Counter(json.dumps(body, sort_keys=True) for body in server.requests)


async def test_a_pipeline_in_batch_mode_sends_no_online_call_and_matches_the_online_run(tmp_path: Path):
    online_root, batch_root = tmp_path / "online", tmp_path / "batch"
    online_root.mkdir(), batch_root.mkdir()
    with OpenAIServer() as server:
        await run_pipeline(settings_for(pipeline_overrides(online_root, server.base_url)))
        online_calls = server.counts_by_kind["ok"]
        server.reset_stats()
        settings = settings_for({**pipeline_overrides(batch_root, server.base_url), **FAST})
        await run_pipeline(settings)
        assert server.counts_by_kind["ok"] == 0 and server.counts_by_kind["batch"] == online_calls
        assert max(_answered_bodies(server).values()) == 1
    assert record_ids(batch_root / "outputs" / "rel") == record_ids(online_root / "outputs" / "rel")
    status = batch_status(settings.run_dir / "batches" / "questions.sqlite")
    assert status["submitted"] >= 1 and status["running"] == 0 and status["lines_answered"] > 0
    # one syllabus' questions sit next to each other, so a prefix cache reuses the shared syllabus prompt
    courses = [
        json.loads(line)["body"]["messages"][-1]["content"].split("\n")[0]
        for path in sorted((settings.run_dir / "batches" / "questions").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    runs = [c for i, c in enumerate(courses) if i == 0 or c != courses[i - 1]]
    assert len(courses) > len(runs) and len(runs) == len(set(runs)), "a syllabus' questions were split up"


def _kill_when(proc: subprocess.Popen[bytes], ready) -> None:
    while proc.poll() is None and not ready():
        time.sleep(0.001)
    assert proc.poll() is None, "the run finished before the kill point"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.parametrize("moment", ["submitting", "polling"])
def test_a_run_killed_while_submitting_or_polling_resumes_without_resubmitting(tmp_path: Path, moment: str):
    with OpenAIServer(batch_delay_s=0.6 if moment == "polling" else 0.0) as server:
        # small files, so the questions stage submits many batches; the kill lands among them
        overrides = {**pipeline_overrides(tmp_path, server.base_url), **FAST, "batch.max_requests_per_file": 2}
        (tmp_path / "o.json").write_text(json.dumps(overrides))
        proc = subprocess.Popen([sys.executable, str(DRIVER), str(tmp_path / "o.json")], stderr=subprocess.PIPE)
        target = 3 if moment == "submitting" else 1
        _kill_when(proc, lambda: len(server.batches.batches) >= target)
        created = len(server.batches.batches)
        run(run_pipeline(settings_for(overrides)))
        bodies = _answered_bodies(server)
        assert max(bodies.values()) == 1, "a request was answered twice: a batch was submitted again"
        assert server.counts_by_kind["ok"] == 0 and len(server.batches.batches) > created
    ledger = read_ledger(tmp_path / "outputs" / "rel" / "ledger.jsonl")["all"]
    assert ledger.calls == server.counts_by_kind["batch"]  # one ledger line per answered line, none twice


async def test_an_expired_batch_resubmits_only_its_remainder_at_batch_prices(make_settings):
    with OpenAIServer() as server:
        server.batches.expire_after = 3
        settings = make_settings(server.base_url, PRICED)
        async with run_client(settings, stage="demo") as client:
            work, plan = topics(client, 8)
            config = BatchSettings(poll_interval_s=0.05, max_waves=2)
            async with batch_mode(client, plan, settings.run_dir / "b.sqlite", config) as report:
                results = [await work(t) for t in range(8)]
        totals = [b["request_counts"]["total"] for b in server.batches.batches.values()]
        statuses = [b["status"] for b in server.batches.batches.values()]
    assert totals == [8, 5] and statuses == ["expired", "expired"] and report.waves == 2
    assert report.answered == 6 and sum(r.ok for r in results) == 6  # 2 left after the last wave: failures
    assert all("deferred" in r.error for r in results if not r.ok) and server.counts_by_kind["ok"] == 0
    lines = [json.loads(x) for x in (settings.run_dir / "ledger.jsonl").read_text().splitlines()]
    paid = [x for x in lines if x["ok"] and not x["cached"]]
    assert len(paid) == 6 and {x["model"] for x in paid} == {"fake-model"}
    tokens = sum(x["prompt_tokens"] + x["completion_tokens"] for x in paid)
    assert tokens > 0 and sum(x["cost_usd"] for x in paid) == pytest.approx(0.5 * tokens)


async def test_with_remainder_online_the_unanswered_lines_go_online_at_full_price(make_settings):
    with OpenAIServer() as server:
        server.batches.expire_after = 5
        settings = make_settings(server.base_url, PRICED)
        async with run_client(settings, stage="demo") as client:
            work, plan = topics(client, 8)
            config = BatchSettings(poll_interval_s=0.05, remainder="online")
            async with batch_mode(client, plan, settings.run_dir / "b.sqlite", config):
                results = [await work(t) for t in range(8)]
        assert len(server.batches.batches) == 1 and server.counts_by_kind["ok"] == 3
    assert all(r.ok for r in results)
    paid = [x for x in map(json.loads, (settings.run_dir / "ledger.jsonl").read_text().splitlines()) if x["ok"]]
    factors = sorted(x["cost_usd"] / (x["prompt_tokens"] + x["completion_tokens"]) for x in paid)
    assert factors == pytest.approx([0.5] * 5 + [1.0] * 3)


async def test_an_invalid_batch_reply_is_re_asked_not_cached(make_settings):
    with OpenAIServer() as server:
        server.script("wrong_schema")  # the first batch line answered breaks the schema
        settings = make_settings(server.base_url)
        async with run_client(settings, stage="demo") as client:
            work, plan = topics(client, 4)
            async with batch_mode(client, plan, settings.run_dir / "b.sqlite", BatchSettings(poll_interval_s=0.05)):
                results = [await work(t) for t in range(4)]
        assert [b["request_counts"]["total"] for b in server.batches.batches.values()] == [4, 1]  # the re-ask
    assert all(r.ok and isinstance(r.parsed, Topic) for r in results)
    reask = next(iter(server.batches.batches.values()))  # the second batch holds the re-ask of the bad reply
    assert reask is not None and server.counts_by_kind["ok"] == 0


async def test_files_respect_the_size_and_enqueued_token_limits_so_no_batch_fails(make_settings):
    with OpenAIServer(batch_delay_s=0.1) as server:
        server.batches.max_bytes = 1200
        server.batches.enqueued_token_limit = 350  # ~102 tokens a line: 3 lines a batch, one batch at a time
        settings = make_settings(server.base_url)
        async with run_client(settings, stage="demo") as client:
            work, plan = topics(client, 9)
            config = BatchSettings(poll_interval_s=0.05, max_bytes_per_file=1200, max_enqueued_tokens=350)
            async with batch_mode(client, plan, settings.run_dir / "b.sqlite", config) as report:
                results = [await work(t) for t in range(9)]
        sizes = [len(f.data) for f in server.batches.files.values() if f.meta["purpose"] == "batch"]
    assert all(r.ok for r in results) and report.errors == [] and len(sizes) >= 3 and max(sizes) <= 1200


async def test_a_failed_batch_is_reported_and_its_lines_planned_again(make_settings):
    with OpenAIServer() as server:
        server.batches.enqueued_token_limit = 10  # every batch over it fails validation, as the real API does
        settings = make_settings(server.base_url)
        async with run_client(settings, stage="demo") as client:
            work, plan = topics(client, 3)
            with pytest.warns(UserWarning, match="token_limit_exceeded"):
                config = BatchSettings(poll_interval_s=0.05, max_waves=2)
                async with batch_mode(client, plan, settings.run_dir / "b.sqlite", config) as report:
                    results = [await work(t) for t in range(3)]
    assert len(report.errors) == 2 and "Enqueued token limit" in report.errors[0]
    assert not any(r.ok for r in results) and report.planned == 6  # planned again in wave 2, failed again


async def test_a_batch_past_the_timeout_is_one_clear_error_and_polling_resumes(make_settings):
    with OpenAIServer(batch_delay_s=0.8) as server:
        settings = make_settings(server.base_url)
        async with run_client(settings, stage="demo") as client:
            work, plan = topics(client, 2)
            state = settings.run_dir / "b.sqlite"
            with pytest.raises(BatchError, match="still running"):
                async with batch_mode(client, plan, state, BatchSettings(poll_interval_s=0.05, timeout_s=0.2)):
                    pass
            assert batch_status(state)["running"] == 1
            async with batch_mode(client, plan, state, BatchSettings(poll_interval_s=0.05)):
                results = [await work(t) for t in range(2)]
        assert len(server.batches.batches) == 1 and all(r.ok for r in results)


async def test_cancel_stops_running_batches_and_their_lines_are_planned_again(make_settings):
    with OpenAIServer(batch_delay_s=30) as server:
        settings = make_settings(server.base_url)
        state = settings.run_dir / "b.sqlite"
        async with run_client(settings, stage="demo") as client:
            _, plan = topics(client, 3)
            with pytest.raises(BatchError):
                async with batch_mode(client, plan, state, BatchSettings(poll_interval_s=0.05, timeout_s=0.1)):
                    pass
            assert len(await cancel_batches(client, state)) == 1
        server.batches.delay_s = 0
        async with run_client(settings, stage="demo") as client:
            work, plan = topics(client, 3)
            async with batch_mode(client, plan, state, BatchSettings(poll_interval_s=0.05)):
                results = [await work(t) for t in range(3)]
        statuses = [b["status"] for b in server.batches.batches.values()]
    assert statuses == ["cancelled", "completed"] and all(r.ok for r in results)


def test_batch_settings_are_reachable_from_configuration(make_settings):
    settings = make_settings("http://127.0.0.1:1/v1", {"llm.mode": "batch", "batch.max_waves": 2})
    assert settings.llm.mode == "batch" and settings.batch.max_waves == 2 and settings.snapshot()["batch"]


async def test_glan_batches_shows_and_cancels_a_runs_batches(make_settings, tmp_path: Path):
    from typer.testing import CliRunner

    from glan_utils.app.cli import app

    with OpenAIServer(batch_delay_s=30) as server:
        settings = make_settings(server.base_url, {"run_name": "big"})
        state = settings.run_dir / "batches" / "questions.sqlite"
        async with run_client(settings, stage="questions") as client:
            _, plan = topics(client, 3)
            with pytest.raises(BatchError):
                async with batch_mode(client, plan, state, BatchSettings(poll_interval_s=0.05, timeout_s=0.1)):
                    pass
        config = tmp_path / "c.yaml"
        config.write_text(
            f"output_dir: {settings.output_dir}\nllm:\n  base_url: {server.base_url}\n  model: fake-model\n"
        )
        shown = CliRunner().invoke(app, ["batches", "big", "-c", str(config)])
        assert shown.exit_code == 0 and re.search(r"\| questions \|\s+1 \|\s+1 \|", shown.output), shown.output
        status = CliRunner().invoke(app, ["status", "big", "-c", str(config)])
        assert status.exit_code == 0, status.output
        jobs = status.output.split("Batch API jobs (cancel: glan batches big --cancel):")[1]
        assert re.search(r"\| questions \|\s+1 \|\s+1 \|", jobs), status.output  # 1 submitted, 1 running
        cancelled = CliRunner().invoke(app, ["batches", "big", "-c", str(config), "--cancel"])
        assert cancelled.exit_code == 0, cancelled.output
        assert "cancel requested for 1 batches" in cancelled.output
        assert [b["status"] for b in server.batches.batches.values()] == ["cancelling"]
    missing = CliRunner().invoke(app, ["batches", "nope", "-c", str(config)])
    assert missing.exit_code == 2 and missing.output.count("\n") == 1
