"""The run seed reaches every sampled call: request seed and cache key come from run seed + sample index.

`seed: 11` and `seed: 41` must draw independent samples of the data set (different requests, different replies,
no shared cache entries), while rerunning `seed: 11` must give identical replies from the cache.
"""

from __future__ import annotations

from pydantic import BaseModel

from glan_utils.llm.client import ChatResult, request_seed
from glan_utils.llm.prompts import RenderedPrompt
from glan_utils.runs.client import run_client
from glan_utils.stages.base import Reply

MESSAGES = [{"role": "user", "content": "Name a subject."}]
PROMPT = RenderedPrompt("subjects", "h", MESSAGES)


class Subject(BaseModel):
    name: str


async def _samples(settings, n: int = 3) -> list[ChatResult]:  # type: ignore[no-untyped-def]
    async with run_client(settings) as client:
        return [await client.chat(prompt=PROMPT, schema=Subject, temperature=1.0, sample_index=i) for i in range(n)]


async def test_two_seeds_differ_and_one_seed_repeats_from_the_cache(openai_server, make_settings):
    first = await _samples(make_settings(openai_server.base_url, {"seed": 11}))
    other = await _samples(make_settings(openai_server.base_url, {"seed": 41}))
    assert openai_server.count == 6, "a second seed is new calls, not cache hits"
    sent = [r["seed"] for r in openai_server.requests]
    assert sent == [request_seed(11, i) for i in range(3)] + [request_seed(41, i) for i in range(3)]
    assert len(set(sent)) == 6
    assert {r.cache_key for r in first}.isdisjoint(r.cache_key for r in other)
    assert all(a.parsed.name != b.parsed.name for a, b in zip(first, other, strict=True))

    again = await _samples(make_settings(openai_server.base_url, {"seed": 11}))
    assert openai_server.count == 6 and all(r.cached for r in again)
    assert [r.parsed.name for r in again] == [r.parsed.name for r in first]


async def test_provenance_records_run_seed_and_sample_index(openai_server, make_settings):
    result = (await _samples(make_settings(openai_server.base_url, {"seed": 7}), n=2))[1]
    assert result.params["run_seed"] == 7 and result.params["sample_index"] == 1
    assert result.params["seed"] == request_seed(7, 1) != 1
    provenance = Reply(result, PROMPT, "subjects", "t").provenance([])
    assert provenance.params["run_seed"] == 7 and provenance.params["sample_index"] == 1


def test_seed_zero_keeps_the_sample_index():
    """Runs made before the run seed counted (seed 0, the default) keep their requests and cache keys."""
    assert [request_seed(0, i) for i in range(3)] == [0, 1, 2]
