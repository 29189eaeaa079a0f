"""The benchmark catalog: one record per benchmark of the GLAN paper, from which every benchmark table is derived.

A record says where the items come from (`loader`, `splits`, or a local copy named by a setting), which task YAML
under `glan_utils/evaluation/tasks/` runs it under each protocol (and the chat models' variant where a chat reply
must be read differently from a continuation), the lm-eval metric keys reported, the protocol in words, the paper's
published numbers and whether the loss-gap check covers it. The settings' choices, the loaders' split table, the
task templates, the metric keys, the notes beside every number, the paper column and the "not run" list all read
this tuple, the way the pipeline reads `STAGES`. Adding a benchmark is one `Benchmark(...)` here plus its task YAML.

Two protocols: `paper` (the GLAN paper's: 0-shot generated answers with rule-based extraction, MBPP 3-shot, BBH
3-shot CoT) and `lm_eval` (lm-eval's default task where it differs: log-likelihood ARC/MMLU, few-shot GSM8K/MATH).
Published numbers are compared only with `paper`-protocol scores."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Protocol = Literal["paper", "lm_eval"]


class ProtocolSpec(BaseModel):
    """How a benchmark runs under one protocol: its task template(s), the reported metrics and what it is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    template: str = Field(description="Task YAML stem under evaluation/tasks/ (a base model's continuation).")
    chat_template: str | None = Field(
        None, description="The chat models' task YAML where a reply is read differently; None: `template`."
    )
    metrics: dict[str, str] = Field(description="Reported label -> lm-eval metric key (`<metric>,<filter>`).")
    note: str = Field(description="The protocol in words, printed beside every number.")

    def template_for(self, chat: bool) -> str:
        """The task YAML a chat model (or a base model) runs."""
        return (self.chat_template or self.template) if chat else self.template


class Benchmark(BaseModel):
    """One benchmark: its source, its protocols, the paper's numbers and the loss-gap eligibility."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    loader: str | None = Field(
        None, description="`module:function(name, split)` yielding its items offline; None: no offline source."
    )
    splits: tuple[str, ...] = ("test",)
    local_copy: str | None = Field(None, description="The evaluation setting naming a local copy, if it needs one.")
    protocols: dict[Protocol, ProtocolSpec] = Field(default_factory=dict)
    published: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Paper model -> reported label -> score (%), from the paper."
    )
    loss_gap: bool = Field(False, description="Checked by the paper's train-vs-test loss gap (Table 3) here.")
    own_budget: bool = Field(
        False, description="Its task keeps its own generation budget, which `max_gen_toks` does not cap."
    )
    missing: str = Field("", description="Why it cannot run here, when it has neither a loader nor a local copy.")

    def protocol(self, wanted: Protocol) -> Protocol:
        """The protocol it runs under when `wanted` is asked for: that one if it has it, else its only one."""
        return wanted if wanted in self.protocols else next(iter(self.protocols))

    def labels(self) -> list[str]:
        """Every label it reports under any protocol (IFEval reports four)."""
        return list(dict.fromkeys(label for spec in self.protocols.values() for label in spec.metrics))


_OLMES = "glan_utils.data.benchmarks"


def _table1(label: str, mistral: float, glan: float) -> dict[str, dict[str, float]]:
    """A benchmark's row of the paper's Table 1 (Mistral-7B vs GLAN-7B, %)."""
    return {"Mistral-7B": {label: mistral}, "GLAN-7B": {label: glan}}


def _arc(name: str, mistral: float, glan: float) -> Benchmark:
    """ARC-Easy and ARC-Challenge share a format, loader, splits and protocols."""
    return Benchmark(
        name=name,
        loader=f"{_OLMES}:arc",
        splits=("test", "validation"),
        protocols={
            "paper": ProtocolSpec(
                template=f"{name}_paper", metrics={name: "exact_match,none"}, note=f"0-shot, {_CHOICE}"
            ),
            "lm_eval": ProtocolSpec(
                template=name, metrics={name: "acc_norm,none"}, note="0-shot log-likelihood (acc_norm)"
            ),
        },
        published=_table1(name, mistral, glan),
        loss_gap=True,
    )


_CHOICE = "generated letter extracted by rules"

CATALOG: tuple[Benchmark, ...] = (
    Benchmark(
        name="humaneval",
        loader=f"{_OLMES}:humaneval",
        protocols={
            "paper": ProtocolSpec(
                template="humaneval",
                chat_template="humaneval_chat",
                metrics={"humaneval": "pass@1,none"},
                note="0-shot pass@1 greedy; base: the continuation of the prompt runs; chat: asked in words, the "
                "reply's code (fenced block, else the function it writes or completes) runs",
            )
        },
        published=_table1("humaneval", 28.0, 48.8),
    ),
    Benchmark(
        name="mbpp",
        loader=f"{_OLMES}:mbpp",
        protocols={
            "paper": ProtocolSpec(
                template="mbpp",
                metrics={"mbpp": "pass@1,none"},
                note="3-shot pass@1 (MBPP prompt-split tasks 2-4); the reply's code (fenced block or the text "
                "before [DONE]) runs; chat: exemplars as turns",
            )
        },
        published=_table1("mbpp", 50.2, 57.6),
    ),
    Benchmark(
        name="gsm8k",
        loader=f"{_OLMES}:gsm8k",
        protocols={
            "paper": ProtocolSpec(
                template="gsm8k_paper",
                metrics={"gsm8k": "exact_match,flexible-extract"},
                note="0-shot CoT, last number extracted",
            ),
            "lm_eval": ProtocolSpec(
                template="gsm8k",
                metrics={"gsm8k": "exact_match,flexible-extract"},
                note="8-shot CoT (lm-eval gsm8k-cot)",
            ),
        },
        published=_table1("gsm8k", 43.4, 80.8),
        loss_gap=True,
    ),
    Benchmark(
        name="math",
        loader=f"{_OLMES}:math",
        splits=("test", "test500"),
        protocols={
            "paper": ProtocolSpec(
                template="math_paper",
                metrics={"math": "math_verify,none"},
                note="0-shot, final answer checked by math-verify",
            ),
            "lm_eval": ProtocolSpec(template="math", metrics={"math": "exact_match,none"}, note="Minerva 4-shot"),
        },
        published=_table1("math", 10.0, 32.7),
        loss_gap=True,
    ),
    Benchmark(
        name="bbh",
        local_copy="bbh_path",
        protocols={
            "paper": ProtocolSpec(
                template="bbh",
                metrics={"bbh": "exact_match,get-answer"},
                note="3-shot CoT (lm-eval bbh_cot_fewshot), micro-average",
            )
        },
        published=_table1("bbh", 56.1, 60.7),
        missing="no copy ships on PyPI; set `evaluation.bbh_path` to a local BIG-Bench-Hard `bbh/` folder "
        "(<task>.json files) and add 'bbh' to the benchmarks",
    ),
    _arc("arc_easy", 79.5, 90.7),
    _arc("arc_challenge", 53.9, 81.1),
    Benchmark(
        name="mmlu",
        loader=f"{_OLMES}:mmlu",
        splits=("test", "validation", "dev"),
        protocols={
            "paper": ProtocolSpec(
                template="mmlu_paper", metrics={"mmlu": "exact_match,none"}, note=f"0-shot, {_CHOICE}"
            ),
            "lm_eval": ProtocolSpec(template="mmlu", metrics={"mmlu": "acc,none"}, note="5-shot log-likelihood"),
        },
        published=_table1("mmlu", 62.3, 62.9),
        loss_gap=True,
    ),
    Benchmark(
        name="ifeval",
        loader=f"{_OLMES}:ifeval",
        protocols={
            "paper": ProtocolSpec(
                template="ifeval",
                metrics={
                    "ifeval_prompt_strict": "prompt_level_strict_acc,none",
                    "ifeval_inst_strict": "inst_level_strict_acc,none",
                    "ifeval_prompt_loose": "prompt_level_loose_acc,none",
                    "ifeval_inst_loose": "inst_level_loose_acc,none",
                },
                note="0-shot, 4 accuracies, its own 1280-token budget",
            )
        },
        own_budget=True,
        published={
            "GLAN-7B": {
                "ifeval_prompt_strict": 34.0,
                "ifeval_inst_strict": 44.8,
                "ifeval_prompt_loose": 41.2,
                "ifeval_inst_loose": 51.6,
            }
        },
    ),
    Benchmark(
        name="evol_instruct",
        missing="the Evol-Instruct test set (218 instructions, GPT-4 judged) ships in no wheel and has no "
        "lm-eval task; GLAN-Test's pairwise judge is this workbench's stand-in",
    ),
)
BY_NAME: dict[str, Benchmark] = {b.name: b for b in CATALOG}
# Benchmarks with an offline source (each has a loader in `glan_utils.data.benchmarks`).
BENCHMARKS: tuple[str, ...] = tuple(b.name for b in CATALOG if b.loader)
# Benchmarks a run can be asked for: offline ones and those read from a configured local copy.
RUNNABLE: tuple[str, ...] = tuple(b.name for b in CATALOG if b.protocols)
# Reported label (e.g. `ifeval_prompt_strict`) -> its benchmark.
LABELS: dict[str, str] = {label: b.name for b in CATALOG for label in b.labels()}
