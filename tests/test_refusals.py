"""Refusals against the real test server: a request the endpoint refuses is a failure of that item and the run goes
on; the same refusal of every call is a setup error that stops the stage within a handful of calls, in one line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.reliability import account, ledger_lines, pipeline_overrides, planned_task_ids, run_pipeline, settings_for

from glan_utils.app.summary import run_table
from glan_utils.core.aio import run
from glan_utils.core.errors import SetupError
from glan_utils.core.jsonl import iter_jsonl
from glan_utils.runs.client import run_client
from glan_utils.runs.store import RunStore
from glan_utils.stages import pipeline, subjects
from glan_utils.testing import OpenAIServer

REFUSED = "refused (HTTP 400 context_length_exceeded)"


@pytest.mark.parametrize("kind", ["context_length", "content_filter", "llama_context"])
def test_refused_items_are_failures_and_the_run_completes(tmp_path: Path, kind: str) -> None:
    with OpenAIServer(models=["fake-model"], refuse={"Group Theory": kind}) as server:
        settings = settings_for(pipeline_overrides(tmp_path, server.base_url))
        reports = run(run_pipeline(settings))
        refused = server.counts_by_kind[kind]
    assert refused == 1  # the one subject-round call about Group Theory; nothing downstream is about it
    rounds = account(settings, subjects.STAGE_ROUNDS, planned_task_ids(settings)[subjects.STAGE_ROUNDS])
    assert len(rounds.failed) == 1 and len(rounds.done) == 3 and not rounds.lost
    (reason,) = rounds.failure_reasons
    assert reason.startswith("refused (HTTP 4")
    manifest = RunStore(settings.run_dir).read_manifest()["stages"]
    assert manifest[subjects.STAGE_ROUNDS]["status"] == "complete_with_failures"
    assert manifest[subjects.STAGE_ROUNDS]["failures_by_reason"] == {reason: 1}
    assert reports[subjects.NAME]["failed"] == 1
    status = run_table(settings.run_dir).set_index("stage")  # what `glan status` shows
    assert status.loc[subjects.STAGE_ROUNDS, "failures_by_reason"] == f"{reason} x1"
    for stage, planned in planned_task_ids(settings).items():  # every other record exists
        done = account(settings, stage, planned)
        assert not done.lost and done.done == planned - done.failed, stage
    refusals = [line for line in ledger_lines(settings) if not line["ok"]]
    assert len(refusals) == 1 and refusals[0]["error"].startswith(reason)  # status, code and message
    disciplines = {s.discipline for s in pipeline.kept_records(settings, subjects.NAME)}
    assert disciplines == {"Linear Algebra", "Real Analysis", "Complex Analysis"}


def test_refusal_carries_status_code_and_message_and_is_never_cached(openai_server, make_settings) -> None:
    settings = make_settings(openai_server.base_url)
    openai_server.script("context_length", "context_length")
    messages = [{"role": "user", "content": "a very long prompt"}]

    async def ask() -> object:
        async with run_client(settings, stage="t") as client:
            return await client.chat(messages)

    first = run(ask())
    assert not first.ok and first.error.startswith(REFUSED + ": This model's maximum context length is 2048")
    assert "resulted in 4 tokens" in first.error  # the server's own message, about this request
    assert openai_server.count == 1  # a refusal is not retried
    second = run(ask())
    assert not second.ok and not second.cached and openai_server.count == 2
    third = run(ask())
    assert third.ok and not third.cached


async def test_interleaved_refusals_do_not_stop_a_stage(openai_server, make_settings) -> None:
    settings = make_settings(openai_server.base_url, {"llm.concurrency": 4})
    openai_server.refuse = {"long": "context_length"}
    prompts = [[{"role": "user", "content": f"{'long ' * (i % 7) if i % 2 else ''}question {i}"}] for i in range(40)]
    async with run_client(settings, stage="t") as client:
        results = await asyncio.gather(*(client.chat(m) for m in prompts))
    refused = [r for r in results if not r.ok]
    assert len(refused) == openai_server.counts_by_kind["context_length"] > 5
    assert all(r.error.startswith(REFUSED) for r in refused)


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("unauthorized", "authentication failed"),
        ("forbidden", "HTTP 403"),
        ("not_found", "The model does not exist"),
        ("bad_param", "HTTP 400 unsupported_value"),
    ],
)
def test_every_call_refused_stops_within_a_handful_of_calls(tmp_path: Path, kind: str, needle: str) -> None:
    with OpenAIServer(models=["fake-model"], refuse={"": kind}) as server:
        overrides = pipeline_overrides(tmp_path, server.base_url, **{"subjects.rounds": 3})
        settings = settings_for(overrides)  # 12 subject-round calls, 128 allowed in flight
        run(pipeline.run(settings, "taxonomy"))
        with pytest.raises(SetupError) as exc:
            run(pipeline.run(settings, "subjects"))
        sent = server.count
    message = str(exc.value)
    assert "\n" not in message and needle in message, message
    assert sent <= settings.llm.refusal_check_calls
    manifest = RunStore(settings.run_dir).read_manifest()["stages"][subjects.STAGE_ROUNDS]
    assert manifest["status"] == "stopped" and needle in manifest["error"]


def test_a_small_stage_refused_alike_stops_too(tmp_path: Path) -> None:
    """Fewer calls than llm.refusal_check_calls, all refused the same way: the stage made nothing and stops."""
    with OpenAIServer(models=["fake-model"], refuse={"": "not_found"}) as server:
        settings = settings_for(pipeline_overrides(tmp_path, server.base_url))
        run(pipeline.run(settings, "taxonomy"))
        with pytest.raises(SetupError, match=r"all 4 calls were refused \(HTTP 404 .*does not exist"):
            run(pipeline.run(settings, "subjects"))


def test_refusal_share_is_a_setting(openai_server, make_settings) -> None:
    """With refusal_check_share 0.5, 2 of the first 3 refused alike stop the stage though one call passed."""
    settings = make_settings(
        openai_server.base_url,
        {"llm.concurrency": 1, "llm.refusal_check_calls": 3, "llm.refusal_check_share": 0.5},
    )
    openai_server.script("ok", "bad_param", "bad_param", *["ok"] * 10)

    async def many() -> None:
        async with run_client(settings, stage="t") as client:
            for i in range(10):
                await client.chat([{"role": "user", "content": f"q{i}"}])

    with pytest.raises(SetupError, match="2 of the first 3 calls were refused"):
        run(many())
    assert openai_server.count == 3


def test_a_stage_whose_every_call_is_refused_for_length_stops_with_the_reason(tmp_path: Path) -> None:
    """Every request too long for the model (say max_tokens above its window): the messages differ per request,
    so the client's check does not trip, but a stage that made nothing stops with the server's reason."""
    with OpenAIServer(models=["fake-model"], refuse={"": "context_length"}) as server:
        settings = settings_for(pipeline_overrides(tmp_path, server.base_url, **{"subjects.rounds": 2}))
        run(pipeline.run(settings, "taxonomy"))
        with pytest.raises(SetupError, match=r"all 8 calls were refused \(HTTP 400 context_length_exceeded\)"):
            run(pipeline.run(settings, "subjects"))


def test_a_refused_request_is_sent_again_only_when_something_changed(tmp_path: Path) -> None:
    with OpenAIServer(models=["fake-model", "other-model"], refuse={"Group Theory": "content_filter"}) as server:
        settings = settings_for(pipeline_overrides(tmp_path, server.base_url))
        run(pipeline.run(settings, "taxonomy"))
        run(pipeline.run(settings, "subjects"))
        assert server.counts_by_kind["content_filter"] == 1
        run(pipeline.run(settings, "subjects"))  # the same request again: not sent, failed with the refusal
        assert server.counts_by_kind["content_filter"] == 1
        failures = account(settings, subjects.STAGE_ROUNDS, planned_task_ids(settings)[subjects.STAGE_ROUNDS])
        assert failures.failure_reasons == {"refused (HTTP 400 content_filter)": 2}
        last = list(iter_jsonl(settings.run_dir / f"{subjects.STAGE_ROUNDS}.failures.jsonl"))[-1]["reason"]
        assert "refused on an earlier run, not sent again" in last
        resend = settings_for({**pipeline_overrides(tmp_path, server.base_url), "llm.resend_refused": True})
        run(pipeline.run(resend, "subjects"))
        assert server.counts_by_kind["content_filter"] == 2
        other = {"llm.model": "other-model", "run_name": "other"}  # same cache: another model is another request
        other_settings = settings_for({**pipeline_overrides(tmp_path, server.base_url), **other})
        run(pipeline.run(other_settings, "taxonomy"))
        run(pipeline.run(other_settings, "subjects"))
        assert server.counts_by_kind["content_filter"] == 3
