"""Fine-tuning settings: two presets (a minutes-long CPU demo and the paper's recipe) one parameter apart.

`FinetuneSettings(preset="paper")` fills every field from the preset; any field given explicitly overrides it,
so `FinetuneSettings(preset="paper", method="lora")` is the paper recipe with LoRA. `plan()` turns settings
and a data-set size into optimizer steps, tokens and GPU hours, so the cost is seen before a GPU is rented.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from glan_utils.errors import ConfigError
from glan_utils.section import Section

PresetName = Literal["cpu-demo", "paper"]

PRESETS: dict[str, dict[str, Any]] = {
    # SmolLM2-135M-Instruct from the PyPI GGUF, LoRA r=8: a few dozen steps finish in minutes on 2 CPU cores.
    "cpu-demo": {
        "model": "smollm2-gguf",
        "method": "lora",
        "lora_r": 8,
        "lora_alpha": 16,
        "epochs": 1.0,
        "max_steps": 30,
        "learning_rate": 2e-4,
        "per_device_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "num_devices": 1,
        "lr_scheduler": "cosine",
        "warmup_steps": 3,
        "max_length": 384,
        "bf16": False,
        "gradient_checkpointing": False,
        "eval_steps": 10,
        "max_eval_examples": 16,
        "save_steps": None,
        "n_params": 1.35e8,
    },
    # Paper §3: Mistral-7B, loss on responses only, 3 epochs, LR 3e-6, batch 512, cosine, 1000 warmup steps.
    # 512 = 4 sequences x 16 accumulation steps x 8 GPUs (launch with `accelerate launch`).
    "paper": {
        "model": "mistralai/Mistral-7B-v0.1",
        "method": "full",
        "lora_r": 64,
        "lora_alpha": 128,
        "epochs": 3.0,
        "max_steps": None,
        "learning_rate": 3e-6,
        "per_device_batch_size": 4,
        "gradient_accumulation_steps": 16,
        "num_devices": 8,
        "lr_scheduler": "cosine",
        "warmup_steps": 1000,
        "max_length": 2048,
        "bf16": True,
        "gradient_checkpointing": True,
        "eval_steps": 500,
        "max_eval_examples": 2000,
        "save_steps": 1000,
        "n_params": 7.24e9,
    },
}

# Peak dense bf16 throughput per GPU (vendor data sheets) and the model-FLOPs utilisation assumed for a 7B
# full fine-tune with FSDP/DeepSpeed at 2k context: well-tuned runs report 35-50%, so we take 40%.
GPU_PEAK_FLOPS = {"A100-80GB": 312e12, "H100-SXM": 989e12}
ASSUMED_MFU = 0.40


class FinetuneSettings(Section):
    """Response-only SFT. Unset fields come from `preset`; set fields override it."""

    preset: PresetName = Field(
        "cpu-demo", description="'cpu-demo' (minutes on CPU) or 'paper' (Mistral-7B recipe)."
    )
    model: str = Field(
        ..., description="Hub id, local directory, path to a .gguf, or 'smollm2-gguf' (PyPI GGUF)."
    )
    method: Literal["lora", "full"] = Field(..., description="LoRA adapters via peft, or full fine-tuning.")
    lora_r: int = Field(..., ge=1)
    lora_alpha: int = Field(..., ge=1)
    epochs: float = Field(..., gt=0)
    max_steps: int | None = Field(
        ..., ge=1, description="Stop after this many optimizer steps (null = epochs)."
    )
    learning_rate: float = Field(..., gt=0)
    per_device_batch_size: int = Field(..., ge=1)
    gradient_accumulation_steps: int = Field(..., ge=1)
    num_devices: int = Field(
        ..., ge=1, description="GPUs the run is launched on; used for the effective batch."
    )
    lr_scheduler: str = Field(..., description="transformers scheduler name, e.g. cosine, linear, constant.")
    warmup_steps: int = Field(..., ge=0)
    max_length: int = Field(..., ge=16, description="Tokens per example; longer ones are truncated.")
    bf16: bool
    gradient_checkpointing: bool
    eval_steps: int | None = Field(
        ..., ge=1, description="Evaluate on the test split every N steps (null = never)."
    )
    max_eval_examples: int | None = Field(..., ge=1, description="Cap on test examples used for eval loss.")
    save_steps: int | None = Field(
        ..., ge=1, description="Checkpoint every N steps (null = only the final model)."
    )
    max_train_examples: int | None = Field(None, ge=1, description="Cap on training examples (demo sizes).")
    n_params: float = Field(..., gt=0, description="Model parameter count, for the GPU-hour estimate.")
    seed: int = 0
    logging_steps: int = Field(1, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        preset = data.get("preset", "cpu-demo")
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        return {**PRESETS[preset], **data}

    @property
    def effective_batch(self) -> int:
        return self.per_device_batch_size * self.gradient_accumulation_steps * self.num_devices


def load_finetune_settings(config_path: str | Path | None = None, **overrides: Any) -> FinetuneSettings:
    """The `finetune:` section of the run's settings, then notebook parameters on top (None means "not given")."""
    from glan_utils.config import load_settings  # config imports this module to assemble Settings

    given = {f"finetune.{key}": value for key, value in overrides.items() if value is not None}
    return load_settings(config_path, given).finetune


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


def plan(
    settings: FinetuneSettings, n_examples: int, tokens_per_example: float | None = None
) -> TrainingPlan:
    """Steps, tokens and GPU hours for `n_examples` training pairs.

    `tokens_per_example` should be measured on the tokenized data set (see `finetune.mean_tokens`); without it
    we assume half of `max_length`. GPU hours = training FLOPs / (peak bf16 FLOP/s x 40% MFU), per GPU type.
    """
    if n_examples < 1:
        raise ConfigError("config error: the training set is empty; export a data set first (notebook 05)")
    steps_per_epoch = math.ceil(n_examples / settings.effective_batch)
    by_epochs = math.ceil(steps_per_epoch * settings.epochs)
    total_steps = min(by_epochs, settings.max_steps) if settings.max_steps else by_epochs
    per_example = min(tokens_per_example or settings.max_length / 2, settings.max_length)
    examples_seen = total_steps * settings.effective_batch
    total_tokens = examples_seen * per_example
    flops = _train_flops(settings, total_tokens)
    hours = {gpu: flops / (peak * ASSUMED_MFU) / 3600 for gpu, peak in GPU_PEAK_FLOPS.items()}
    warnings = []
    if settings.warmup_steps >= total_steps:
        warnings.append(
            f"warmup_steps={settings.warmup_steps} >= total steps {total_steps}: the LR never peaks"
        )
    if n_examples < settings.effective_batch:
        warnings.append(f"{n_examples} examples < effective batch {settings.effective_batch}")
    assumption = (
        f"{_train_flops(settings, 1) / settings.n_params:.0f}*N*T FLOPs with N={settings.n_params:.3g} "
        f"params; {ASSUMED_MFU:.0%} MFU of peak bf16 (A100 312, H100 989 TFLOP/s); "
        f"{per_example:.0f} tokens/example"
    )
    return TrainingPlan(
        preset=settings.preset,
        model=settings.model,
        method=settings.method,
        n_examples=n_examples,
        effective_batch=settings.effective_batch,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        epochs_run=examples_seen / n_examples,
        tokens_per_example=per_example,
        total_tokens=total_tokens,
        train_flops=flops,
        gpu_hours=hours,
        assumption=assumption,
        warnings=tuple(warnings),
    )
