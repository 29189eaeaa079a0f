"""Settings of the evaluation notebook: which benchmarks, under which protocol, how many items, how long the answers.

The benchmarks and their protocols are the catalog's (`settings/benchmarks.py`): `paper` (the GLAN paper's) and,
where lm-eval's default task differs, `lm_eval`. Published numbers are compared only with `paper`-protocol scores.
The defaults are the demo's (minutes on a CPU with the embedded model); `configs/paper.yaml` runs every benchmark
in full."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from glan_utils.core.section import Section
from glan_utils.settings.benchmarks import BY_NAME, RUNNABLE, Protocol


class EvalSettings(Section):
    """Which benchmarks to run, how, and how many items each; small limits make a CPU run take minutes."""

    benchmarks: list[str] = Field(
        default_factory=lambda: ["gsm8k", "arc_easy", "mbpp"],
        description=f"Subset of {', '.join(RUNNABLE)} (paper: all; BBH needs `bbh_path`).",
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
    judge_model: str | None = Field(
        None,
        description="GLAN-Test's judge model; null = the quality judge (quality.model) when one is configured, "
        "else the data generator (llm.model), which may favour answers in its own style, so a warning says so "
        "(paper.yaml: gpt-4o, the generator being gpt-4o-mini).",
    )
    judge_base_url: str | None = Field(
        None, description="GLAN-Test judge's endpoint; null = the quality judge's with its model, else the run's."
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
        unknown = sorted({*self.benchmarks, *self.protocols} - set(RUNNABLE))
        if unknown:
            raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(RUNNABLE)}")
        absent = sorted(f"{name}: {p}" for name, p in self.protocols.items() if p not in BY_NAME[name].protocols)
        if absent:
            raise ValueError(f"protocol(s) a benchmark does not have: {', '.join(absent)}")
        return self

    def protocol_of(self, benchmark: str) -> Protocol:
        """The protocol a benchmark runs under: its own setting, else `protocol` where it has that one, else
        its only protocol (HumanEval, MBPP, IFEval and BBH have the paper's only)."""
        return BY_NAME[benchmark].protocol(self.protocols.get(benchmark, self.protocol))
