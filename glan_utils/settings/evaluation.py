"""Settings of the evaluation notebook: which benchmarks, under which protocol, how many items, how long the answers.

Two protocols per benchmark: `paper` (the GLAN paper's: 0-shot, a generated answer, rule-based extraction for
ARC, MMLU, GSM8K and MATH) and `lm_eval` (lm-eval's default task: log-likelihood for ARC/MMLU, 8-shot GSM8K, 4-shot
MATH). Published numbers are compared only with `paper`-protocol scores. The defaults are the demo's (minutes on a CPU
with the embedded model); `configs/paper.yaml` runs every benchmark in full."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from glan_utils.core.section import Section

# The benchmarks with an offline source (`glan_utils.data.benchmarks` has one loader per name).
BENCHMARKS = ("gsm8k", "math", "humaneval", "mbpp", "arc_easy", "arc_challenge", "mmlu", "ifeval")
# Benchmarks whose lm-eval default differs from the paper's protocol: one task YAML each (see tasks/).
PROTOCOL_VARIANTS = ("gsm8k", "math", "arc_easy", "arc_challenge", "mmlu")
# One task only, and it is not the paper's: MBPP runs 0-shot (the paper: 3-shot from MBPP's prompt split, which no
# wheel ships), so its published number is never set beside ours.
NOT_PAPER = ("mbpp",)
Protocol = Literal["paper", "lm_eval"]


class EvalSettings(Section):
    """Which benchmarks to run, how, and how many items each; small limits make a CPU run take minutes."""

    benchmarks: list[str] = Field(
        default_factory=lambda: ["gsm8k", "arc_easy", "mbpp"],
        description=f"Subset of {', '.join(BENCHMARKS)} (paper: all, BBH has no offline source).",
    )
    protocol: Protocol = Field(
        "paper",
        description="Default protocol: 'paper' (0-shot, generated answer, rule-based extraction) or 'lm_eval'.",
    )
    protocols: dict[str, Protocol] = Field(
        default_factory=dict,
        description="Per-benchmark protocol overriding `protocol`, e.g. {arc_easy: lm_eval}.",
    )
    limit: int | None = Field(
        2, ge=1, le=1_000_000, description="Items per benchmark, spread over the split; null = all."
    )
    max_gen_toks: int | None = Field(
        128, ge=1, le=100_000, description="Cap on generated tokens; IFEval keeps its own 1280-token budget."
    )
    batch_size: int = Field(1, ge=1, le=4096)
    device: str = Field(
        "auto", description="Local models: 'auto' (cuda when a GPU is visible, else cpu), 'cpu', 'cuda:0'."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Local models' weights: 'auto' is bfloat16 on a GPU and float32 on a CPU."
    )
    backend: Literal["auto", "hf", "vllm"] = Field(
        "auto",
        description="Local models: 'auto' uses lm-eval's vLLM backend when vllm is installed and a GPU is visible "
        "(not for GGUF files), else transformers ('hf').",
    )
    tensor_parallel_size: int | None = Field(
        None, ge=1, le=64, description="vLLM: GPUs one model is split over; null = every visible GPU of the node."
    )
    bootstrap: int = Field(1000, ge=100, le=1_000_000, description="Bootstrap resamples for intervals.")
    judge_limit: int | None = Field(
        10, ge=1, le=1_000_000, description="GLAN-Test questions to judge; null = the whole split."
    )
    judge_max_tokens: int = Field(
        512, ge=16, le=100_000, description="Answer budget of GLAN-Test answers (the references are full solutions)."
    )
    judge_mode: Literal["pairwise", "reference", "both"] = Field(
        "both",
        description="GLAN-Test: 'pairwise' (the paper: two models' answers, both orders), 'reference' "
        "(each answer against the generator's unverified answer), or both views.",
    )
    loss_gap_limit: int = Field(
        10, ge=1, le=1_000_000, description="Items per split for the loss-gap check (demo; paper.yaml: 200)."
    )
    loss_gap_train: dict[str, str] = Field(
        default_factory=dict,
        description="Benchmark -> local JSONL of its train split (fields question/answer, or text), for the "
        "paper's train-vs-test loss gap; without one the validation split is the reference.",
    )
    bbh_path: str | None = Field(
        None,
        description="Local BIG-Bench-Hard copy (the suzgunmirac/BIG-Bench-Hard `bbh/` folder of <task>.json "
        "files); none ships on PyPI, so BBH is skipped without it.",
    )

    @model_validator(mode="after")
    def _known_benchmarks(self) -> EvalSettings:
        unknown = sorted({*self.benchmarks, *self.protocols} - {*BENCHMARKS, "bbh"})
        if unknown:
            raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}, bbh")
        return self

    def protocol_of(self, benchmark: str) -> Protocol:
        """The protocol a benchmark runs under; a benchmark with one task has that task's protocol."""
        if benchmark in NOT_PAPER:
            return "lm_eval"
        if benchmark not in PROTOCOL_VARIANTS:
            return "paper"
        return self.protocols.get(benchmark, self.protocol)
