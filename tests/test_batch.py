"""Batch API mode against the fake server's Files + Batches endpoints: plan, submit, poll, collect, then cache hits."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import BaseModel, Field

from glan_utils.llm.batch import BatchError, BatchSettings, plan_calls, run_batches, write_batch_files
from glan_utils.llm.client import open_client
from glan_utils.llm.ledger import read_ledger
from glan_utils.testing import OpenAIServer


class Topic(BaseModel):
    name: str = Field(max_length=40)


async def work(client, task: int):
    return await client.chat([{"role": "user", "content": f"topic {task}"}], schema=Topic, temperature=1.0)


FAST = BatchSettings(poll_interval_s=0.05, timeout_s=10)


async def test_batch_fills_the_cache_so_the_stage_then_makes_no_online_call(make_settings):
    with OpenAIServer(batch_delay_s=0.2) as server:
        settings = make_settings(server.base_url)
        async with open_client(settings, stage="subjects") as client:
            planned = await plan_calls(client, [*range(12), 3], lambda t: work(client, t))
            assert len(planned) == 12 and server.count == 0  # planning sends nothing; duplicates collapse
            report = await run_batches(client, planned, settings.run_dir, FAST)
            assert report.cached == 12 and report.failed == 0 and len(report.batch_ids) == 1
            assert server.counts_by_kind["batch"] == 12
            results = await asyncio.gather(*(work(client, t) for t in range(12)))
        assert all(r.ok and r.cached and isinstance(r.parsed, Topic) for r in results)
        assert server.counts_by_kind["ok"] == 0  # no online chat call at all
        totals = read_ledger(settings.run_dir / "ledger.jsonl")["all"]
        assert totals.calls == 12 and totals.cached == 12


async def test_rerun_resumes_saved_batches_instead_of_paying_twice(make_settings):
    with OpenAIServer(batch_delay_s=0.1) as server:
        settings = make_settings(server.base_url)
        async with open_client(settings, stage="answers") as client:
            planned = await plan_calls(client, range(5), lambda t: work(client, t))
            state = settings.run_dir / "batches" / "answers.json"
            first = await run_batches(client, planned, settings.run_dir, FAST)
            assert not state.exists() and state.with_suffix(".collected.json").exists()
            again = await run_batches(client, planned, settings.run_dir, FAST)
        assert again.already_cached == 5 and again.batch_ids == [] and first.cached == 5
        assert server.counts_by_kind["batch"] == 5


async def test_a_batch_that_outlives_the_timeout_is_one_clear_error(make_settings):
    with OpenAIServer(batch_delay_s=30) as server:
        settings = make_settings(server.base_url)
        async with open_client(settings, stage="syllabi") as client:
            planned = await plan_calls(client, range(2), lambda t: work(client, t))
            with pytest.raises(BatchError, match="still running"):
                await run_batches(client, planned, settings.run_dir, BatchSettings(poll_interval_s=0.05, timeout_s=0.3))
        saved = json.loads((settings.run_dir / "batches" / "syllabi.json").read_text())
        assert len(saved["batch_ids"]) == 1 and saved["requests"] == 2


def test_batch_files_respect_the_line_limit(tmp_path):
    from glan_utils.llm.batch import PlannedCall

    planned = [PlannedCall(f"k{i}", {"model": "m", "messages": []}) for i in range(5)]
    paths = write_batch_files(planned, tmp_path, max_lines=2)
    lines = [json.loads(line) for p in paths for line in p.read_text().splitlines()]
    assert [len(p.read_text().splitlines()) for p in paths] == [2, 2, 1]
    assert [line["custom_id"] for line in lines] == [p.key for p in planned]
    assert all(line["url"] == "/v1/chat/completions" and line["method"] == "POST" for line in lines)
