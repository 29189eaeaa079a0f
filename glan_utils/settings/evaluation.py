"""Settings of the evaluation notebook: which benchmarks, how many items, how long the answers.

The defaults are the demo's (minutes on a CPU with the embedded model); the paper runs every benchmark in full.
"""

from __future__ import annotations

from pydantic import Field

from glan_utils.core.section import Section

# The benchmarks with an offline source (`glan_utils.data.benchmarks` has one loader per name).
BENCHMARKS = ("gsm8k", "math", "humaneval", "mbpp", "arc_easy", "arc_challenge", "mmlu", "ifeval")


class EvalSettings(Section):
    """Which benchmarks to run and how many items each; small limits make a CPU run take minutes."""

    benchmarks: list[str] = Field(
        default_factory=lambda: ["gsm8k", "arc_easy", "mbpp"],
        description=f"Subset of {', '.join(BENCHMARKS)} (paper: all, BBH has no offline source).",
    )
    limit: int | None = Field(
        2, ge=1, le=1_000_000, description="Items per benchmark, spread over the split; null = all."
    )
    max_gen_toks: int | None = Field(
        128, ge=1, le=100_000, description="Cap on generated tokens (IFEval asks for 1280)."
    )
    batch_size: int = Field(1, ge=1, le=4096)
    judge_limit: int | None = Field(
        10, ge=1, le=1_000_000, description="GLAN-Test questions to judge; null = the whole split."
    )
    judge_max_tokens: int = Field(512, ge=16, le=100_000, description="Answer length for GLAN-Test answers.")
    loss_gap_limit: int = Field(10, ge=1, le=1_000_000, description="Items per split for the loss-gap check.")
