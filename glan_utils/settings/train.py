"""Fine-tuning settings: two presets (a minutes-long CPU demo and the paper's recipe) one parameter apart.

`FinetuneSettings(preset="paper")` fills every field from the preset; any field given explicitly overrides it,
so `FinetuneSettings(preset="paper", method="lora")` is the paper recipe with LoRA. `batch_size` is the global
batch: the gradient accumulation is derived from the launched world size (`accumulation_steps`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from glan_utils.core.errors import ConfigError
from glan_utils.core.section import Section

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
        "batch_size": 4,
        "per_device_batch_size": 4,
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
    # The global batch 512 = 4 sequences x accumulation x GPUs: 16 steps on 8 GPUs, 128 on one (`glan train`).
    "paper": {
        "model": "mistralai/Mistral-7B-v0.1",
        "method": "full",
        "lora_r": 64,
        "lora_alpha": 128,
        "epochs": 3.0,
        "max_steps": None,
        "learning_rate": 3e-6,
        "batch_size": 512,
        "per_device_batch_size": 4,
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


class FinetuneSettings(Section):
    """Response-only SFT. Unset fields come from `preset`; set fields override it."""

    preset: PresetName = Field("cpu-demo", description="'cpu-demo' (minutes on CPU) or 'paper' (Mistral-7B recipe).")
    model: str = Field(..., description="Hub id, local directory, path to a .gguf, or 'smollm2-gguf' (PyPI GGUF).")
    method: Literal["lora", "full"] = Field(..., description="LoRA adapters via peft, or full fine-tuning.")
    lora_r: int = Field(..., ge=1)
    lora_alpha: int = Field(..., ge=1)
    epochs: float = Field(..., gt=0)
    max_steps: int | None = Field(..., ge=1, description="Stop after this many optimizer steps (null = epochs).")
    learning_rate: float = Field(..., gt=0)
    batch_size: int = Field(..., ge=1, description="Global batch (sequences per optimizer step, over all GPUs).")
    per_device_batch_size: int = Field(..., ge=1)
    num_devices: int = Field(
        ..., ge=1, description="GPUs the plan assumes (memory per GPU, wall time); a run uses its launched world size."
    )
    lr_scheduler: str = Field(..., description="transformers scheduler name, e.g. cosine, linear, constant.")
    warmup_steps: int = Field(..., ge=0)
    max_length: int = Field(..., ge=16, description="Tokens per example; longer ones are truncated.")
    bf16: bool = Field(..., description="bf16 autocast over fp32 master weights (weights always load in fp32).")
    gradient_checkpointing: bool
    packing: bool = Field(
        False, description="Pack examples into max_length blocks (TRL best-fit; the prompt mask is kept)."
    )
    resume: bool = Field(True, description="Continue from the last checkpoint under finetune/<preset>/checkpoints.")
    eval_steps: int | None = Field(..., ge=1, description="Evaluate on the test split every N steps (null = never).")
    max_eval_examples: int | None = Field(..., ge=1, description="Cap on test examples used for eval loss.")
    save_steps: int | None = Field(..., ge=1, description="Checkpoint every N steps (null = only the final model).")
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

    def accumulation_steps(self, world_size: int) -> int:
        """Gradient accumulation that makes `batch_size` from `per_device_batch_size` on `world_size` processes;
        a batch that does not divide is refused in one line."""
        per_step = self.per_device_batch_size * world_size
        if self.batch_size % per_step:
            raise ConfigError(
                f"finetune.batch_size {self.batch_size} is not a multiple of per_device_batch_size "
                f"{self.per_device_batch_size} x {world_size} processes; change the GPU count or per_device_batch_size"
            )
        return self.batch_size // per_step
