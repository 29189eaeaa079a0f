"""Response-only supervised fine-tuning (paper §3) on the exported GLAN data set.

The data set's `messages` become TRL's conversational prompt/completion pairs, one per assistant turn (a
multi-turn chat gives one per tutor reply); TRL applies the model's chat template and `completion_only_loss` masks
the prompt tokens (label -100), so the loss is on assistant turns only, never on a user turn.
LoRA via peft by default, full fine-tuning as an option; one code path runs the CPU demo and the paper recipe.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import DatasetDict, load_from_disk
from peft import LoraConfig
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import SFTConfig, SFTTrainer

from glan_utils.core.errors import InputError
from glan_utils.core.paths import DATASET, FINETUNE
from glan_utils.data.run_card import card_section, write_run_card
from glan_utils.settings import FinetuneSettings
from glan_utils.train.models import load_model_and_tokenizer


def load_exported_dataset(run_dir: str | Path) -> DatasetDict:
    """The data set notebook 05 exported to `<run_dir>/dataset/hf` (splits train and test)."""
    path = Path(run_dir) / DATASET / "hf"
    if not path.is_dir():
        raise InputError(f"no exported data set at {path}: run the data set stage (notebook 05) first")
    return load_from_disk(str(path))


def prompt_completions(example: dict[str, Any]) -> list[dict[str, Any]]:
    """Chat `messages` -> one TRL conversational prompt/completion per assistant turn: the prompt is every turn
    before it, the completion the turn itself. So a multi-turn chat puts the loss on each assistant turn once and
    on no user turn (a single-turn pair gives exactly one example, as before)."""
    messages = example["messages"]
    if len(messages) < 2 or messages[-1]["role"] != "assistant":
        raise InputError(f"example {example.get('id', '?')}: messages must end with an assistant answer")
    return [
        {"prompt": messages[:i], "completion": [message]}
        for i, message in enumerate(messages)
        if message["role"] == "assistant" and i
    ]


def _expand(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    rows = [
        row for i in range(len(batch["messages"])) for row in prompt_completions({k: v[i] for k, v in batch.items()})
    ]
    return {"prompt": [r["prompt"] for r in rows], "completion": [r["completion"] for r in rows]}


def prepare_dataset(data: DatasetDict, settings: FinetuneSettings) -> DatasetDict:
    """Prompt/completion splits (one example per assistant turn), from chats capped (seeded sample) at
    `max_train_examples` / `max_eval_examples`."""
    if "train" not in data or len(data["train"]) == 0:
        raise InputError("the exported data set has no training examples")
    caps = {"train": settings.max_train_examples, "test": settings.max_eval_examples}
    out = {}
    for split, cap in caps.items():
        if split not in data or len(data[split]) == 0:
            continue
        ds = data[split]
        if cap is not None and len(ds) > cap:
            ds = ds.shuffle(seed=settings.seed).select(range(cap))
        out[split] = ds.map(_expand, batched=True, remove_columns=ds.column_names)
    return DatasetDict(out)


def mean_tokens(dataset: Any, tokenizer: PreTrainedTokenizerBase, sample: int = 1000) -> float:
    """Mean chat-templated length (prompt + answer) of up to `sample` prompt/completion examples."""
    rows = dataset.select(range(min(sample, len(dataset))))
    texts = [tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=False) for r in rows]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return sum(lengths) / len(lengths)


def sft_config(settings: FinetuneSettings, output_dir: Path, has_eval: bool) -> SFTConfig:
    """TRL arguments from our settings; loss on completions only, checkpoints only when asked."""
    evaluate = has_eval and settings.eval_steps is not None
    return SFTConfig(
        output_dir=str(output_dir / "checkpoints"),
        seed=settings.seed,
        report_to="none",
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_steps,
        per_device_train_batch_size=settings.per_device_batch_size,
        per_device_eval_batch_size=settings.per_device_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        max_length=settings.max_length,
        completion_only_loss=True,
        bf16=settings.bf16,
        activation_checkpointing=settings.gradient_checkpointing,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=settings.eval_steps if evaluate else None,
        logging_steps=settings.logging_steps,
        save_strategy="steps" if settings.save_steps else "no",
        save_steps=settings.save_steps or 500,
        use_cpu=not torch.cuda.is_available(),
    )


def build_trainer(
    settings: FinetuneSettings,
    data: DatasetDict,
    output_dir: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
) -> SFTTrainer:
    """An SFTTrainer over prepared prompt/completion splits, with a LoRA adapter unless `method='full'`."""
    lora = None
    if settings.method == "lora":
        lora = LoraConfig(
            r=settings.lora_r,
            lora_alpha=settings.lora_alpha,
            lora_dropout=0.05,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
    return SFTTrainer(
        model=model,
        args=sft_config(settings, output_dir, "test" in data),
        train_dataset=data["train"],
        eval_dataset=data.get("test"),
        processing_class=tokenizer,
        peft_config=lora,
    )


@dataclass
class TrainResult:
    """What a fine-tuning run did: losses, tokens, time, and where the model went."""

    preset: str
    output_dir: str
    steps: int
    tokens_seen: int
    wall_time_s: float
    tokens_per_s: float
    train_loss_first: float | None
    train_loss_last: float | None
    eval_loss_before: float | None
    eval_loss_after: float | None
    history: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _history(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Trainer logs -> one row per logged step: loss, eval_loss, num_tokens, learning_rate when present."""
    keys = ("loss", "eval_loss", "num_tokens", "learning_rate")
    rows = [{"step": log["step"], **{k: float(log[k]) for k in keys if k in log}} for log in log_history]
    return [row for row in rows if len(row) > 1]


def train(
    settings: FinetuneSettings,
    data: DatasetDict,
    run_dir: str | Path,
    model: PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> TrainResult:
    """Fine-tune on prepared splits; save model/adapter, card and loss history under finetune/<preset>/."""
    if model is None or tokenizer is None:
        model, tokenizer = load_model_and_tokenizer(settings.model, bf16=settings.bf16)
    out_dir = Path(run_dir) / FINETUNE / settings.preset
    trainer = build_trainer(settings, data, out_dir, model, tokenizer)
    has_eval = trainer.eval_dataset is not None
    eval_before = trainer.evaluate()["eval_loss"] if has_eval else None
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    history = _history(trainer.state.log_history)  # before the final evaluate() appends a duplicate row
    eval_after = trainer.evaluate()["eval_loss"] if has_eval else None
    if eval_before is not None:
        history.insert(0, {"step": 0, "eval_loss": eval_before})
    losses = [row["loss"] for row in history if "loss" in row]
    tokens = int(max((row.get("num_tokens", 0) for row in history), default=0))
    result = TrainResult(
        preset=settings.preset,
        output_dir=str(out_dir),
        steps=trainer.state.global_step,
        tokens_seen=tokens,
        wall_time_s=wall,
        tokens_per_s=tokens / wall if wall else 0.0,
        train_loss_first=losses[0] if losses else None,
        train_loss_last=losses[-1] if losses else None,
        eval_loss_before=eval_before,
        eval_loss_after=eval_after,
        history=history,
    )
    trainer.save_model(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    (out_dir / "train_result.json").write_text(json.dumps(result.as_dict(), indent=2), encoding="utf-8")
    (out_dir / "README.md").write_text(model_card(settings, result, Path(run_dir)), encoding="utf-8")
    return result


def model_card(settings: FinetuneSettings, result: TrainResult, run_dir: Path) -> str:
    """A Hugging Face style card: base model, data set (linked to its card), hyper-parameters, losses, and the run
    card (`data/run_card.py`), so a published model says exactly how its data were made."""
    params = "\n".join(f"| {k} | {v} |" for k, v in settings.model_dump().items())
    loss = "\n".join(
        f"| {name} | {value:.4f} |"
        for name, value in [
            ("train loss (first step)", result.train_loss_first),
            ("train loss (last step)", result.train_loss_last),
            ("eval loss before", result.eval_loss_before),
            ("eval loss after", result.eval_loss_after),
        ]
        if value is not None
    )
    return f"""---
base_model: {settings.model}
library_name: {"peft" if settings.method == "lora" else "transformers"}
tags: [glan, sft, completion-only-loss]
---
# GLAN {settings.preset} fine-tune of `{settings.model}`

Response-only supervised fine-tuning (GLAN paper §3) on the GLAN data set of run `{run_dir.name}`
(`{run_dir / DATASET / "hf"}`; card: [dataset README](../../dataset/README.md)). Method: {settings.method}.

## Training
{result.steps} optimizer steps, {result.tokens_seen:,} tokens seen, {result.wall_time_s:.1f} s wall time
({result.tokens_per_s:.0f} tokens/s). Loss history: `train_result.json`.

| metric | value |
|---|---|
{loss}

## Hyper-parameters
| setting | value |
|---|---|
{params}

{card_section(write_run_card(run_dir))}
"""
