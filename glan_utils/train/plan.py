"""Before renting a GPU: optimizer steps, tokens, GPU hours, GPU memory per device and wall time of a fine-tuning
run, under a stated assumption (or from measured tokens/s)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from glan_utils.core.errors import ConfigError
from glan_utils.settings.train import FinetuneSettings

# Peak dense bf16 throughput per GPU (vendor data sheets) and the model-FLOPs utilisation assumed for a 7B
# full fine-tune with FSDP/DeepSpeed at 2k context: well-tuned runs report 35-50%, so we take 40%.
GPU_PEAK_FLOPS = {"A100-80GB": 312e12, "H100-SXM": 989e12}
ASSUMED_MFU = 0.40
# Training state per parameter with fp32 master weights and AdamW: weights 4 + gradients 4 + two moments 8 bytes,
# sharded over the GPUs by FSDP full-shard / ZeRO-3. LoRA keeps the frozen fp32 base whole on every GPU.
FULL_STATE_BYTES = 16
LORA_BASE_BYTES = 4


@dataclass(frozen=True)
class TrainingPlan:
    """What a run will cost before it starts: steps, tokens, and GPU hours under a stated assumption."""

    preset: str
    model: str
    method: str
    n_examples: int
    effective_batch: int
    steps_per_epoch: int
    total_steps: int
    epochs_run: float
    tokens_per_example: float
    total_tokens: float
    train_flops: float
    gpu_hours: dict[str, float]
    num_devices: int
    gpu_memory_gb_per_device: float
    wall_time_h: float
    wall_time_from: str
    assumption: str
    warnings: tuple[str, ...]

    def as_row(self) -> dict[str, Any]:
        """Flat dict for a results table: one `gpu_hours_<GPU>` column per GPU type."""
        row = asdict(self)
        row.update({f"gpu_hours_{gpu}": hours for gpu, hours in row.pop("gpu_hours").items()})
        return row


def _train_flops(settings: FinetuneSettings, tokens: float) -> float:
    """6·N·T FLOPs for forward+backward; checkpointing re-runs the forward (+2·N·T); LoRA: no weight grads."""
    per_token = 4.0 if settings.method == "lora" else 6.0
    if settings.gradient_checkpointing:
        per_token += 2.0
    return per_token * settings.n_params * tokens


def gpu_memory_gb(settings: FinetuneSettings) -> float:
    """Weights, gradients and optimizer state per GPU (activations come on top; checkpointing keeps them small)."""
    if settings.method == "lora":
        return LORA_BASE_BYTES * settings.n_params / 2**30
    return FULL_STATE_BYTES * settings.n_params / settings.num_devices / 2**30


def plan(
    settings: FinetuneSettings,
    n_examples: int,
    tokens_per_example: float | None = None,
    tokens_per_s: float | None = None,
) -> TrainingPlan:
    """Steps, tokens, GPU hours, memory per GPU and wall time for `n_examples` training pairs on `num_devices`.

    `tokens_per_example` should be measured on the tokenized data set (see `finetune.mean_tokens`); without it
    we assume half of `max_length`. GPU hours = training FLOPs / (peak bf16 FLOP/s x 40% MFU), per GPU type; the
    wall time is the H100 hours over `num_devices`, or total tokens / `tokens_per_s` when a run measured it.
    """
    if n_examples < 1:
        raise ConfigError("config error: the training set is empty; export a data set first (notebook 05)")
    steps_per_epoch = math.ceil(n_examples / settings.batch_size)
    by_epochs = math.ceil(steps_per_epoch * settings.epochs)
    total_steps = min(by_epochs, settings.max_steps) if settings.max_steps else by_epochs
    per_example = min(tokens_per_example or settings.max_length / 2, settings.max_length)
    examples_seen = total_steps * settings.batch_size
    total_tokens = examples_seen * per_example
    flops = _train_flops(settings, total_tokens)
    hours = {gpu: flops / (peak * ASSUMED_MFU) / 3600 for gpu, peak in GPU_PEAK_FLOPS.items()}
    warnings = []
    if settings.warmup_steps >= total_steps:
        warnings.append(f"warmup_steps={settings.warmup_steps} >= total steps {total_steps}: clipped to a tenth")
    if n_examples < settings.batch_size:
        warnings.append(f"{n_examples} examples < effective batch {settings.batch_size}")
    assumption = (
        f"{_train_flops(settings, 1) / settings.n_params:.0f}*N*T FLOPs with N={settings.n_params:.3g} "
        f"params; {ASSUMED_MFU:.0%} MFU of peak bf16 (A100 312, H100 989 TFLOP/s); "
        f"{per_example:.0f} tokens/example"
    )
    if tokens_per_s:
        wall, wall_from = total_tokens / tokens_per_s / 3600, f"measured {tokens_per_s:,.0f} tokens/s"
    else:
        wall, wall_from = hours["H100-SXM"] / settings.num_devices, f"H100 hours / {settings.num_devices} GPUs"
    return TrainingPlan(
        preset=settings.preset,
        model=settings.model,
        method=settings.method,
        n_examples=n_examples,
        effective_batch=settings.batch_size,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        epochs_run=examples_seen / n_examples,
        tokens_per_example=per_example,
        total_tokens=total_tokens,
        train_flops=flops,
        gpu_hours=hours,
        num_devices=settings.num_devices,
        gpu_memory_gb_per_device=gpu_memory_gb(settings),
        wall_time_h=wall,
        wall_time_from=wall_from,
        assumption=assumption,
        warnings=tuple(warnings),
    )
