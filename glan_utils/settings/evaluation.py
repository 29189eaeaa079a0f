"""Settings of the evaluation notebook: which benchmarks, how many items, how long the answers."""

from __future__ import annotations

from pydantic import Field

from glan_utils.core.section import Section

# The benchmarks with an offline source (`glan_utils.data.benchmarks` has one loader per name).
BENCHMARKS = ("gsm8k", "math", "humaneval", "mbpp", "arc_easy", "arc_challenge", "mmlu", "ifeval")


class EvalSettings(Section):
    """Which benchmarks to run and how many items each; small limits make a CPU run take minutes."""

    benchmarks: list[str] = Field(
        default_factory=lambda: list(BENCHMARKS),
        description="Subset of BENCHMARKS.",
    )
    limit: int | None = Field(20, ge=1, description="Items per benchmark, spread over the split; null = all.")
    max_gen_toks: int | None = Field(256, ge=1, description="Cap on generated tokens (IFEval asks for 1280).")
    batch_size: int = Field(1, ge=1)
    judge_limit: int | None = Field(20, ge=1, description="GLAN-Test questions to judge; null = the whole split.")
    judge_max_tokens: int = Field(512, ge=16, description="Answer length for GLAN-Test answers.")
