"""The fake OpenAI server, seen through the real openai SDK and raw HTTP clients."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Annotated, Literal

import aiohttp
import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field, conint, constr

from glan_utils.testing import Behavior, OpenAIServer, fake_json, wrong_json

MODEL = "fake-model"


class Subject(BaseModel):
    subject_name: constr(min_length=3, max_length=40)
    level: Literal["undergraduate", "graduate"]
    subtopics: list[str] = Field(min_length=2, max_length=5)


class SubjectList(BaseModel):
    subjects: list[Subject] = Field(min_length=1, max_length=4)


class Session(BaseModel):
    index: conint(ge=1, le=30)
    description: str | None = None
    weight: Annotated[float, Field(gt=0, le=1)]
    concepts: list[Annotated[str, Field(max_length=12)]] = Field(max_length=5)
    graded: bool


class Syllabus(BaseModel):
    title: str
    sessions: list[Session] = Field(min_length=10, max_length=30)
    prerequisite: Syllabus | None = None
    tags: dict[str, int] = {}
    pair: tuple[str, int]


SCHEMA_MODELS = [Subject, SubjectList, Session, Syllabus]


@pytest.fixture
def server():
    with OpenAIServer([MODEL, "other-model"], hang_s=2.0) as srv:
        yield srv


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)


def chat(client, text="Name three subjects of physics.", **kwargs):
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}], **kwargs)


def schema_format(model: type[BaseModel]) -> dict:
    return {
        "type": "json_schema",
        "json_schema": {"name": model.__name__, "schema": model.model_json_schema()},
    }


def test_chat_completion_has_openai_shape_and_word_counts(client, server):
    reply = chat(client, "hello there big world")
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-") and reply.model == MODEL
    content = reply.choices[0].message.content
    assert "hello there big world" in content and reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == 4
    assert reply.usage.completion_tokens == len(content.split())
    assert reply.usage.total_tokens == 4 + len(content.split())
    assert server.requests[-1]["messages"][0]["content"] == "hello there big world"


def test_models_listing_and_unknown_model(client, server):
    assert [m.id for m in client.models.list()] == [MODEL, "other-model"]
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert err.value.code == "model_not_found"
    assert server.counts_by_kind["model_not_found"] == 1


def test_api_key_is_required_when_configured():
    with OpenAIServer(api_key="sekrit") as srv:
        with pytest.raises(openai.AuthenticationError):
            chat(openai.OpenAI(base_url=srv.base_url, api_key="wrong", max_retries=0))
        assert chat(openai.OpenAI(base_url=srv.base_url, api_key="sekrit", max_retries=0)).choices


@pytest.mark.parametrize(
    ("behavior", "error", "status"),
    [
        (Behavior("429", retry_after=2.5), openai.RateLimitError, 429),
        ("500", openai.InternalServerError, 500),
        ("503", openai.InternalServerError, 503),
    ],
)
def test_http_error_kinds(client, server, behavior, error, status):
    server.script(behavior)
    with pytest.raises(error) as err:
        chat(client)
    assert err.value.status_code == status
    if status == 429:
        assert err.value.response.headers["retry-after"] == "2.5"
    assert chat(client).choices[0].message.content  # the script is used up: back to ok


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("context_length", 400, "context_length_exceeded"),
        ("llama_context", 400, 400),
        ("content_filter", 400, "content_filter"),
        ("bad_param", 400, "unsupported_value"),
        ("unauthorized", 401, "invalid_api_key"),
        ("forbidden", 403, None),
        ("not_found", 404, None),
    ],
)
def test_refusal_kinds_scripted_and_by_content(client, server, kind, status, code):
    server.script(kind)
    with pytest.raises(openai.APIStatusError) as err:
        chat(client)
    assert err.value.status_code == status and err.value.body["code"] == code
    server.refuse = {"Physics": kind}
    assert chat(client, "About chemistry").choices  # only requests mentioning the text are refused
    with pytest.raises(openai.APIStatusError):
        chat(client, "About Physics")
    assert server.counts_by_kind[kind] == 2


def test_reset_drops_the_connection(client, server):
    server.script("reset", "reset")
    with pytest.raises(openai.APIConnectionError):
        chat(client)
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{server.base_url}/chat/completions", json={"model": MODEL, "messages": []})
    assert server.counts_by_kind["reset"] == 2


def test_timeout_trips_a_short_client_timeout(client, server):
    server.script(Behavior("timeout", hang_s=5))
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        chat(client.with_options(timeout=0.3))
    assert time.monotonic() - started < 3


def test_malformed_body_is_not_json(server):
    server.script("malformed")
    response = httpx.post(f"{server.base_url}/chat/completions", json={"model": MODEL, "messages": []})
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_content_fault_kinds(client, server):
    fmt = schema_format(Subject)
    schema = Subject.model_json_schema()
    server.script("prose", "truncated", "wrong_schema", Behavior("text", content="plain words"))
    prose = chat(client, response_format=fmt).choices[0].message.content
    fenced = re.search(r"```json\n(.*)\n```", prose, re.DOTALL)
    assert not prose.lstrip().startswith("{") and fenced
    jsonschema.validate(json.loads(fenced.group(1)), schema)
    truncated = chat(client, response_format=fmt).choices[0]
    assert truncated.finish_reason == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated.message.content)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(chat(client, response_format=fmt).choices[0].message.content), schema)
    assert chat(client).choices[0].message.content == "plain words"
    assert dict(server.counts_by_kind) == {"prose": 1, "truncated": 1, "wrong_schema": 1, "text": 1}
    assert server.count == 4 and len(server.requests) == 4


def test_script_order_and_stats(client, server):
    server.script("429", "500", "ok")
    outcomes = []
    for _ in range(4):
        try:
            chat(client)
            outcomes.append("ok")
        except openai.APIStatusError as exc:
            outcomes.append(exc.status_code)
    assert outcomes == [429, 500, "ok", "ok"]
    assert server.count == 4 and server.counts_by_kind == {"429": 1, "500": 1, "ok": 2}
    server.reset_stats()
    assert server.count == 0 and server.requests == [] and server.peak_in_flight == 0


def chaos_statuses(seed: int, n: int = 40) -> list[int | str]:
    with OpenAIServer(fault_rate=0.5, fault_kinds=["429", "500", "reset", "malformed"], seed=seed) as srv:
        statuses: list[int | str] = []
        with httpx.Client() as http:
            for _ in range(n):
                try:
                    reply = http.post(f"{srv.base_url}/chat/completions", json={"model": MODEL, "messages": []})
                    statuses.append(reply.status_code if reply.status_code != 200 else reply.text[:12])
                except httpx.TransportError:
                    statuses.append("reset")
        assert srv.count == n and sum(srv.counts_by_kind.values()) == n
    return statuses


def test_chaos_mode_is_seeded_and_reproducible():
    first = chaos_statuses(seed=7)
    assert first == chaos_statuses(seed=7)
    assert first != chaos_statuses(seed=8)
    assert {429, 500, "reset"} <= set(first) and 5 < sum(s in (429, 500, "reset") for s in first) < 35


async def _fire(url: str, n: int) -> list[int]:
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> int:
            payload = {"model": MODEL, "messages": [{"role": "user", "content": f"q{i}"}]}
            async with session.post(f"{url}/chat/completions", json=payload) as reply:
                await reply.json()
                return reply.status

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_latency_overlaps_and_concurrency_cap():
    with OpenAIServer(latency_s=0.2) as srv:
        started = time.monotonic()
        assert asyncio.run(_fire(srv.base_url, 20)) == [200] * 20
        assert time.monotonic() - started < 1.0 and srv.peak_in_flight == 20
    with OpenAIServer(latency_s=0.1, max_concurrency=4) as srv:
        started = time.monotonic()
        assert asyncio.run(_fire(srv.base_url, 12)) == [200] * 12
        assert time.monotonic() - started >= 0.29 and srv.peak_in_flight == 4


def test_many_requests_all_served():
    with OpenAIServer() as srv:
        assert asyncio.run(_fire(srv.base_url, 600)) == [200] * 600
        assert srv.count == 600 and len({json.dumps(r) for r in srv.requests}) == 600


@pytest.mark.parametrize("model", SCHEMA_MODELS, ids=lambda m: m.__name__)
def test_fake_json_validates_and_is_deterministic(model):
    schema = model.model_json_schema()
    values = [fake_json(schema, seed) for seed in range(25)]
    for value in values:
        jsonschema.validate(value, schema)
        model.model_validate(value)
    assert values == [fake_json(schema, seed) for seed in range(25)]
    assert len({json.dumps(v, sort_keys=True) for v in values}) == 25
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong_json(schema), schema)


def test_schema_replies_parse_vary_by_prompt_and_reproduce(client, server):
    parsed = (
        client.chat.completions.parse(
            model=MODEL, messages=[{"role": "user", "content": "physics"}], response_format=SubjectList
        )
        .choices[0]
        .message.parsed
    )
    assert isinstance(parsed, SubjectList)
    fmt = schema_format(SubjectList)
    contents = [chat(client, f"discipline {i}", response_format=fmt).choices[0].message.content for i in range(10)]
    names = {s["subject_name"] for c in contents for s in json.loads(c)["subjects"]}
    assert len(set(contents)) == 10 and len(names) >= 10
    with OpenAIServer([MODEL]) as other:
        again = openai.OpenAI(base_url=other.base_url, api_key="x", max_retries=0)
        assert chat(again, "discipline 3", response_format=fmt).choices[0].message.content == contents[3]


def test_json_object_text_n_and_custom_responder(client):
    assert isinstance(
        json.loads(chat(client, response_format={"type": "json_object"}).choices[0].message.content), dict
    )
    two = chat(client, n=2).choices
    assert len(two) == 2 and two[0].message.content != two[1].message.content
    with OpenAIServer(responder=lambda body: body["messages"][-1]["content"].upper()) as srv:
        custom = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        assert chat(custom, "shout this").choices[0].message.content == "SHOUT THIS"


def test_completions_logprobs_shape(client):
    prompts = ["The capital of France is Paris", "Water boils at 100 degrees"]
    reply = client.completions.create(model=MODEL, prompt=prompts, echo=True, logprobs=3, max_tokens=0)
    assert len(reply.choices) == 2
    for choice, prompt in zip(reply.choices, prompts, strict=True):
        lp = choice.logprobs
        assert choice.text == prompt and lp.tokens == prompt.split()
        assert len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == len(lp.tokens)
        assert lp.token_logprobs[0] is None and all(-9 < x < 0 for x in lp.token_logprobs[1:])
        assert all(prompt[off:].startswith(tok) for tok, off in zip(lp.tokens, lp.text_offset, strict=True))
        for token, value, top in zip(lp.tokens[1:], lp.token_logprobs[1:], lp.top_logprobs[1:], strict=True):
            assert top[token] == value and len(top) == 3
    again = client.completions.create(model=MODEL, prompt=prompts[0], echo=True, logprobs=3, max_tokens=0)
    assert again.choices[0].logprobs.token_logprobs == reply.choices[0].logprobs.token_logprobs
    generated = client.completions.create(model=MODEL, prompt="Once upon", max_tokens=4)
    assert len(generated.choices[0].text.split()) == 4 and generated.usage.completion_tokens == 4


def test_lm_eval_local_completions_scores_loglikelihood():
    """lm-eval auto-detects the server's word tokenizer and gets the hash-derived logprobs back."""
    lm_api = pytest.importorskip("lm_eval.models.openai_completions")
    from lm_eval.api.instance import Instance

    from glan_utils.testing.fake_payloads import token_logprob

    with OpenAIServer([MODEL]) as srv:
        lm = lm_api.LocalCompletionsAPI(base_url=f"{srv.base_url}/completions", model=MODEL, max_retries=1)
        assert lm.tokenizer_backend == "remote"
        pairs = [("The capital of France is", " Paris"), ("The capital of France is", " Rome city")]
        requests = [Instance("loglikelihood", {}, pair, idx=i) for i, pair in enumerate(pairs)]
        scores = [logprob for logprob, _ in lm.loglikelihood(requests, disable_tqdm=True)]
    expected = [token_logprob("is", "Paris"), token_logprob("is", "Rome") + token_logprob("Rome", "city")]
    assert scores == pytest.approx(expected)


def test_batch_flow_end_to_end():
    with OpenAIServer([MODEL], batch_delay_s=0.3) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0)
        lines = [
            {
                "custom_id": f"req-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": MODEL, "messages": [{"role": "user", "content": f"question {i}"}]},
            }
            for i in range(3)
        ]
        upload = client.files.create(file=("in.jsonl", "".join(json.dumps(x) + "\n" for x in lines)), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        seen = [batch.status]
        while seen[-1] != "completed":
            time.sleep(0.05)
            batch = client.batches.retrieve(batch.id)
            seen.append(batch.status)
        assert [s for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]] == [
            "validating",
            "in_progress",
            "completed",
        ]
        output = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
        output.sort(key=lambda o: o["custom_id"])  # like the real API, the fake answers out of input order
        assert [o["custom_id"] for o in output] == ["req-0", "req-1", "req-2"]
        assert all(o["response"]["status_code"] == 200 for o in output)
        assert "question 1" in output[1]["response"]["body"]["choices"][0]["message"]["content"]
        assert {o["response"]["body"]["model"] for o in output} == {f"{MODEL}-2024-07-18"}  # a dated snapshot
        assert batch.request_counts.total == 3 and srv.count == 3 and srv.counts_by_kind["batch"] == 3


def test_stop_joins_its_thread():
    for _ in range(3):
        with OpenAIServer() as srv:
            srv.script(Behavior("timeout", hang_s=30))
            with pytest.raises(httpx.TimeoutException):
                httpx.post(f"{srv.base_url}/chat/completions", json={"model": MODEL, "messages": []}, timeout=0.1)
    assert not [t for t in threading.enumerate() if t.name == "fake-openai-server"]
    with pytest.raises(ValueError, match="unknown behaviour kind"):
        Behavior("teapot")


def test_cli_serves_stats_until_sigterm():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "glan_utils.testing.openai_server",
            "--port",
            "0",
            "--latency",
            "0.01",
            "--fault-rate",
            "0",
            "--refuse",
            "Physics=context_length",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", base_url)
        root = base_url.removesuffix("/v1")
        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
        for i in range(3):
            chat(client, f"q{i}")
        stats = httpx.get(f"{root}/stats").json()
        assert stats["count"] == 3 and stats["counts_by_kind"] == {"ok": 3} and stats["peak_in_flight"] == 1
        with pytest.raises(openai.BadRequestError, match="maximum context length"):
            chat(client, "Physics")
        assert httpx.post(f"{root}/stats/reset").json()["count"] == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()
