"""The LLM client against a real local HTTP server: cache, retries, repair, ledger, concurrency, fatal errors."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from pydantic import BaseModel, Field

from glan_utils.core.errors import SetupError
from glan_utils.llm.ledger import read_ledger
from glan_utils.runs.client import run_client
from glan_utils.testing import Behavior


class Topic(BaseModel):
    name: str = Field(max_length=40)
    concepts: list[str] = Field(min_length=1, max_length=5)


MESSAGES = [{"role": "user", "content": "Name a topic."}]


async def call(settings, **kwargs):
    async with run_client(settings, stage="t") as client:
        return await client.chat(MESSAGES, **kwargs)


async def test_cache_hit_makes_no_server_call(openai_server, make_settings):
    settings = make_settings(openai_server.base_url)
    first = await call(settings, schema=Topic, temperature=1.0)
    sent = openai_server.count
    second = await call(settings, schema=Topic, temperature=1.0)
    assert first.ok and second.ok and second.cached and not first.cached
    assert second.parsed == first.parsed
    assert openai_server.count == sent
    changed = await call(settings, schema=Topic, temperature=0.5)  # any sampling change is a different call
    assert not changed.cached and openai_server.count == sent + 1


async def test_failure_is_recorded_and_not_cached(openai_server, make_settings):
    settings = make_settings(openai_server.base_url, {"llm.max_retries": 1})
    openai_server.script("500", "503")
    failed = await call(settings, schema=Topic)
    assert not failed.ok and "HTTP 503" in failed.error
    again = await call(settings, schema=Topic)
    assert again.ok and not again.cached


async def test_retry_honours_retry_after(openai_server, make_settings):
    settings = make_settings(openai_server.base_url, {"llm.retry_max_wait_s": 5})
    openai_server.script(Behavior("429", retry_after=0.6), "ok")
    start = time.perf_counter()
    result = await call(settings)
    assert result.ok
    assert time.perf_counter() - start >= 0.6
    assert openai_server.counts_by_kind["429"] == 1


@pytest.mark.parametrize("fault", ["malformed", "reset", "500", "timeout"])
async def test_transient_faults_are_retried(openai_server, make_settings, fault):
    settings = make_settings(openai_server.base_url, {"llm.timeout_s": 1})
    openai_server.script(Behavior(fault, hang_s=3), "ok")
    result = await call(settings, schema=Topic)
    assert result.ok, result.error
    assert openai_server.count >= 2


async def test_prose_wrapped_json_is_repaired(openai_server, make_settings):
    settings = make_settings(openai_server.base_url)
    openai_server.script("prose")
    result = await call(settings, schema=Topic)
    assert result.ok and result.repaired and isinstance(result.parsed, Topic)
    assert openai_server.count == 1


async def test_wrong_schema_is_reasked_once_then_cached(openai_server, make_settings):
    settings = make_settings(openai_server.base_url)
    openai_server.script("wrong_schema", "ok")
    result = await call(settings, schema=Topic)
    assert result.ok and result.repaired
    reask = openai_server.requests[-1]["messages"]
    assert reask[-1]["role"] == "user" and "invalid" in reask[-1]["content"]
    rerun = await call(settings, schema=Topic)
    assert rerun.cached and rerun.parsed == result.parsed and openai_server.count == 2


async def test_unrepairable_output_is_a_failure_with_raw_text(openai_server, make_settings):
    settings = make_settings(openai_server.base_url)
    openai_server.script(Behavior("text", content="no json here"), Behavior("text", content="still none"))
    result = await call(settings, schema=Topic)
    assert not result.ok and result.text == "still none" and result.error


async def test_truncated_text_is_a_failure(openai_server, make_settings):
    settings = make_settings(openai_server.base_url)
    openai_server.script("truncated")
    result = await call(settings)
    assert not result.ok and "max_tokens" in result.error


async def test_ledger_matches_server_count(openai_server, make_settings):
    settings = make_settings(openai_server.base_url, {"llm.concurrency": 8})
    openai_server.script("429", "500", "malformed")

    async def many():
        async with run_client(settings, stage="t") as client:
            prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(30)]
            await asyncio.gather(*(client.chat(m) for m in prompts))
            await asyncio.gather(*(client.chat(m) for m in prompts[:10]))

    await many()
    totals = read_ledger(settings.run_dir / "ledger.jsonl")["all"]
    assert totals.calls == openai_server.count  # every attempt, retries included, is one ledger line
    assert totals.cached == 10 and totals.failed == 3


async def test_concurrency_is_bounded(make_settings):
    from glan_utils.testing import OpenAIServer

    with OpenAIServer(models=["fake-model"], latency_s=0.05) as server:
        settings = make_settings(server.base_url, {"llm.concurrency": 4})
        async with run_client(settings) as client:
            await asyncio.gather(*(client.chat([{"role": "user", "content": str(i)}]) for i in range(20)))
        assert server.peak_in_flight == 4


async def test_unknown_model_is_one_clear_error(openai_server, make_settings):
    settings = make_settings(openai_server.base_url, {"llm.model": "no-such-model"})
    with pytest.raises(SetupError, match="no-such-model"):
        await call(settings)


async def test_endpoint_down_is_one_clear_error(make_settings):
    settings = make_settings("http://127.0.0.1:9/v1")
    with pytest.raises(SetupError, match="not reachable"):
        await call(settings)


async def test_api_key_is_sent_but_never_written(openai_server, make_settings, monkeypatch, tmp_path):
    secret = "sk-test-" + "k3y" * 8
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    settings = make_settings(openai_server.base_url)
    assert (await call(settings)).ok
    written = "".join(p.read_text(errors="ignore") for p in tmp_path.rglob("*") if p.is_file())
    assert secret not in written and secret not in json.dumps(settings.snapshot())


async def test_samples_of_one_prompt_are_distinct_calls(openai_server, make_settings):
    settings = make_settings(openai_server.base_url)
    async with run_client(settings) as client:
        results = [await client.chat(MESSAGES, schema=Topic, temperature=1.0, sample_index=i) for i in range(3)]
    assert openai_server.count == 3
    assert [r["seed"] for r in openai_server.requests] == [0, 1, 2]
    assert len({r.parsed.name for r in results}) == 3


def test_a_dated_model_name_takes_its_prefix_price():
    from glan_utils.llm.ledger import call_cost
    from glan_utils.settings import Price

    prices = {"gpt-4o": Price(input_per_1m=2.5, output_per_1m=10), "gpt-4o-mini": Price(input_per_1m=0.15)}
    assert call_cost("gpt-4o-mini-2024-07-18", 1_000_000, 0, prices) == pytest.approx(0.15)
    assert call_cost("gpt-4o-2024-05-13", 0, 1_000_000, prices) == pytest.approx(10)
    assert call_cost("gpt-4", 1_000_000, 0, prices) == 0.0


async def _stage_under_budget(settings, n: int):
    from glan_utils.core.records import TaxonomyNode
    from glan_utils.runs.stage import run_stage
    from glan_utils.runs.store import RunStore

    class Task(str):
        @property
        def id(self) -> str:
            return str(self)

    async with run_client(settings, stage="demo") as client:

        async def work(task):
            result = await client.chat([{"role": "user", "content": f"name {task}"}], max_tokens=20)
            return [TaxonomyNode(name=result.text[:30] or "x", level="discipline")]

        store = RunStore(settings.run_dir)
        return await run_stage(store, "demo", [Task(f"t{i}") for i in range(n)], work, concurrency=4)


PER_TOKEN = {"llm.prices": {"fake-model": {"input_per_1m": 1e6, "output_per_1m": 1e6}}}  # $1 a token


@pytest.mark.parametrize("cap", [{"llm.max_cost_usd": 150}, {"llm.max_tokens_total": 150}])
async def test_the_budget_stops_scheduling_before_a_call_could_exceed_it_and_a_resume_continues(
    openai_server, make_settings, cap
):
    from glan_utils.llm.ledger import BudgetExceeded

    settings = make_settings(openai_server.base_url, {**PER_TOKEN, **cap})
    with pytest.raises(BudgetExceeded, match=r"llm\.max_"):
        await _stage_under_budget(settings, 40)
    spent = read_ledger(settings.run_dir / "ledger.jsonl")["all"]
    assert 0 < spent.calls < 40 and spent.cost_usd <= 150 and spent.prompt_tokens + spent.completion_tokens <= 150
    manifest = json.loads((settings.run_dir / "manifest.json").read_text())["stages"]["demo"]
    assert manifest["status"] == "stopped: budget" and manifest["records_written"] == spent.calls
    # the same cap again: what the ledger already holds counts, so the two runs together stay under it
    with pytest.raises(BudgetExceeded):
        await _stage_under_budget(settings, 40)
    spent = read_ledger(settings.run_dir / "ledger.jsonl")["all"]
    assert spent.cost_usd <= 150 and spent.prompt_tokens + spent.completion_tokens <= 150
    assert openai_server.count == spent.calls
    raised = {key: value * 100 for key, value in cap.items()}
    summary = await _stage_under_budget(make_settings(openai_server.base_url, {**PER_TOKEN, **raised}), 40)
    assert summary.skipped == spent.calls and summary.records == 40 - spent.calls


async def test_a_budget_on_a_model_without_a_price_warns_before_spending(openai_server, make_settings):
    settings = make_settings(openai_server.base_url, {"llm.max_cost_usd": 5})
    with pytest.warns(UserWarning, match="no price for model 'fake-model'.*cannot stop"):
        await call(settings)
