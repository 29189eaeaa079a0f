"""Response-only supervised fine-tuning (paper §3) on the exported GLAN data set.

The data set's `messages` become TRL's conversational prompt/completion pairs, one per assistant turn (a
multi-turn chat gives one per tutor reply); TRL applies the model's chat template and `completion_only_loss` masks
the prompt tokens (label -100), so the loss is on assistant turns only, never on a user turn.
LoRA via peft by default, full fine-tuning as an option; one code path runs the CPU demo and the paper recipe, in
notebook 06 or as `glan train` under `accelerate launch` (1 to N GPUs, FSDP or DeepSpeed from the launch config).
Numerics: fp32 master weights with bf16 autocast (`bf16`), so updates of LR 3e-6 are not rounded away. The global
batch is `batch_size` whatever the world size; a warm-up longer than the run is clipped; a run resumes from its
last checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from datasets import DatasetDict, load_from_disk
from peft import LoraConfig
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig, SFTTrainer

from glan_utils.core.errors import ConfigError, InputError
from glan_utils.core.paths import DATASET, FINETUNE
from glan_utils.data.run_card import card_section, write_run_card
from glan_utils.settings import FinetuneSettings
from glan_utils.train.models import load_model_and_tokenizer
from glan_utils.train.plan import plan


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


def sft_config(settings: FinetuneSettings, output_dir: Path, has_eval: bool, world_size: int = 1) -> SFTConfig:
    """TRL arguments from our settings: loss on completions only, fp32 weights under bf16 autocast, accumulation
    derived from the world size so the global batch is `batch_size`, checkpoints only when asked."""
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
        gradient_accumulation_steps=settings.accumulation_steps(world_size),
        max_length=settings.max_length,
        completion_only_loss=True,
        packing=settings.packing,
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
    """An SFTTrainer over prepared prompt/completion splits, with a LoRA adapter unless `method='full'`; the model
    must hold fp32 weights (the master copy; compute is bf16 under autocast when `bf16`)."""
    low = sorted({str(p.dtype) for p in model.parameters() if p.dtype != torch.float32})
    if low:
        raise ConfigError(f"the model's weights are {', '.join(low)}: load them in fp32 (load_model_and_tokenizer)")
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
        args=sft_config(settings, output_dir, "test" in data, PartialState().num_processes),
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
    world_size: int
    accumulation_steps: int
    effective_batch: int
    warmup_steps: int
    resumed_from: str | None
    peak_gpu_memory_gb: float | None
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


def planned_steps(settings: FinetuneSettings, n_train: int) -> int:
    """Optimizer steps the Trainer will take over `n_train` (packed) examples at the global batch."""
    by_epochs = math.ceil(math.ceil(n_train / settings.batch_size) * settings.epochs)
    return min(by_epochs, settings.max_steps) if settings.max_steps else by_epochs


def clip_warmup(trainer: SFTTrainer, settings: FinetuneSettings, echo: Callable[[str], None]) -> int:
    """A warm-up as long as the run would never reach the peak LR: clip it to a tenth of the run, with a notice."""
    steps = planned_steps(settings, len(trainer.train_dataset))
    if settings.warmup_steps < steps:
        return settings.warmup_steps
    trainer.args.warmup_steps = steps // 10
    echo(f"notice: warmup_steps {settings.warmup_steps} >= the run's {steps} steps; clipped to {steps // 10}")
    return steps // 10


def last_checkpoint(settings: FinetuneSettings, out_dir: Path) -> str | None:
    """The newest `checkpoint-N` under `<out_dir>/checkpoints` when resuming is on, else None."""
    folder = out_dir / "checkpoints"
    return get_last_checkpoint(str(folder)) if settings.resume and folder.is_dir() else None


def train(
    settings: FinetuneSettings,
    data: DatasetDict,
    run_dir: str | Path,
    model: PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    echo: Callable[[str], None] = print,
) -> TrainResult:
    """Fine-tune on prepared splits; save model/adapter, card and loss history under finetune/<preset>/.

    Works in-process (notebook 06) and under `accelerate launch` (`glan train`): each process runs this; only the
    main process writes the card and prints."""
    if model is None or tokenizer is None:
        model, tokenizer = load_model_and_tokenizer(settings.model)
    state = PartialState()
    out_dir = Path(run_dir) / FINETUNE / settings.preset
    trainer = build_trainer(settings, data, out_dir, model, tokenizer)
    say = echo if state.is_main_process else _silent
    warmup = clip_warmup(trainer, settings, say)
    resume = last_checkpoint(settings, out_dir)
    if resume:
        say(f"resuming from {resume}")
    has_eval = trainer.eval_dataset is not None
    eval_before = trainer.evaluate()["eval_loss"] if has_eval else None
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    wall = time.perf_counter() - start
    history = _history(trainer.state.log_history)  # before the final evaluate() appends a duplicate row
    eval_after = trainer.evaluate()["eval_loss"] if has_eval else None
    if eval_before is not None:
        history.insert(0, {"step": 0, "eval_loss": eval_before})
    losses = [row["loss"] for row in history if "loss" in row]
    tokens = int(max((row.get("num_tokens", 0) for row in history), default=0))
    args = trainer.args
    result = TrainResult(
        preset=settings.preset,
        output_dir=str(out_dir),
        steps=trainer.state.global_step,
        world_size=args.world_size,
        accumulation_steps=args.gradient_accumulation_steps,
        effective_batch=args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
        warmup_steps=warmup,
        resumed_from=resume,
        peak_gpu_memory_gb=torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        tokens_seen=tokens,
        wall_time_s=wall,
        tokens_per_s=tokens / wall if wall else 0.0,
        train_loss_first=losses[0] if losses else None,
        train_loss_last=losses[-1] if losses else None,
        eval_loss_before=eval_before,
        eval_loss_after=eval_after,
        history=history,
    )
    trainer.save_model(str(out_dir))  # every process: FSDP / ZeRO-3 gather the shards
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(out_dir))
        (out_dir / "train_result.json").write_text(json.dumps(result.as_dict(), indent=2), encoding="utf-8")
        (out_dir / "README.md").write_text(model_card(settings, result, Path(run_dir)), encoding="utf-8")
    return result


def _silent(_: str) -> None:
    """Non-main processes of a multi-GPU launch print nothing."""


def measured_tokens_per_s(run_dir: str | Path, preset: str) -> float | None:
    """Training throughput a finished run of `preset` measured (its train_result.json), for the plan's wall time."""
    path = Path(run_dir) / FINETUNE / preset / "train_result.json"
    return json.loads(path.read_text(encoding="utf-8"))["tokens_per_s"] if path.is_file() else None


def finetune(settings: FinetuneSettings, run_dir: str | Path, echo: Callable[[str], None] = print) -> TrainResult:
    """`glan train`: the run's exported data set, the plan in one line, then `train` (one process per GPU under
    `accelerate launch`, each running this)."""
    settings = settings.model_copy(update={"num_devices": PartialState().num_processes})
    settings.accumulation_steps(settings.num_devices)  # a batch this world size cannot make: refused before loading
    data = prepare_dataset(load_exported_dataset(run_dir), settings)
    model, tokenizer = load_model_and_tokenizer(settings.model)
    n_train = len(data["train"])
    p = plan(settings, n_train, mean_tokens(data["train"], tokenizer), measured_tokens_per_s(run_dir, settings.preset))
    say = echo if PartialState().is_main_process else _silent
    say(
        f"{settings.preset}: {settings.model} ({settings.method}), {n_train:,} examples, {p.total_steps:,} steps "
        f"of {p.effective_batch} on {p.num_devices} processes, ~{p.gpu_memory_gb_per_device:.1f} GB state per "
        f"GPU, ~{p.wall_time_h:.2f} h ({p.wall_time_from})"
    )
    result = train(settings, data, run_dir, model, tokenizer, echo)
    say(
        f"trained {result.steps} steps x {result.effective_batch} sequences in {result.wall_time_s:.0f} s "
        f"({result.tokens_per_s:,.0f} tokens/s), loss {result.train_loss_first} -> {result.train_loss_last}; "
        f"model in {result.output_dir}"
    )
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
{result.steps} optimizer steps of {result.effective_batch} sequences ({result.world_size} processes x
{result.accumulation_steps} accumulation steps), {result.tokens_seen:,} tokens seen, {result.wall_time_s:.1f} s wall
time ({result.tokens_per_s:.0f} tokens/s). Loss history: `train_result.json`.

| metric | value |
|---|---|
{loss}

## Hyper-parameters
| setting | value |
|---|---|
{params}

{card_section(write_run_card(run_dir))}
"""
