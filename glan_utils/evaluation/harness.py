"""Benchmark evaluation with lm-evaluation-harness, fed offline from `glan_utils.data.benchmarks`.

Each benchmark is a task YAML under `glan_utils/evaluation/tasks/` that `include:`s lm-eval's built-in task and reads a
JSONL file; the templates name the installed lm-eval and the data files with `${...}` placeholders, filled in
here, because lm-eval resolves `include:` as a file path. Models are a local HF/GGUF checkpoint (optionally
plus a LoRA adapter) or an OpenAI-compatible endpoint; one model object is built per model and reused across
benchmarks."""

from __future__ import annotations

import importlib.util
import json
import re
import string
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from glan_utils.core.errors import ConfigError, SetupError
from glan_utils.data import benchmarks
from glan_utils.settings.evaluation import EvalSettings

TEMPLATES = Path(__file__).resolve().parent / "tasks"

# lm-eval metric key per reported number; IFEval reports its four accuracies.
METRICS: dict[str, dict[str, str]] = {
    "gsm8k": {"gsm8k": "exact_match,flexible-extract"},
    "math": {"math": "exact_match,none"},
    "humaneval": {"humaneval": "pass@1,none"},
    "mbpp": {"mbpp": "pass@1,none"},
    "arc_easy": {"arc_easy": "acc_norm,none"},
    "arc_challenge": {"arc_challenge": "acc_norm,none"},
    "mmlu": {"mmlu": "acc,none"},
    "ifeval": {
        "ifeval_prompt_strict": "prompt_level_strict_acc,none",
        "ifeval_inst_strict": "inst_level_strict_acc,none",
        "ifeval_prompt_loose": "prompt_level_loose_acc,none",
        "ifeval_inst_loose": "inst_level_loose_acc,none",
    },
}


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate: a local checkpoint (`path`, `gguf_file`, `peft`) or an endpoint (`base_url`)."""

    name: str
    path: str | None = None
    gguf_file: str | None = None
    peft: str | None = None
    base_url: str | None = None
    model: str | None = None
    tokenizer: str | None = None
    chat: bool = True

    def lm_eval_args(self) -> tuple[str, dict[str, Any]]:
        """lm-eval model type and constructor arguments for this spec."""
        if self.base_url:
            args = {"model": self.model or "default", "tokenizer_backend": None, "tokenized_requests": False}
            if self.chat:
                return "local-chat-completions", args | {"base_url": f"{self.base_url}/chat/completions"}
            if self.tokenizer:  # multiple-choice tasks need prompt logprobs, scored with a local tokenizer
                args |= {"tokenizer_backend": "huggingface", "tokenizer": self.tokenizer}
            return "local-completions", args | {"base_url": f"{self.base_url}/completions"}
        if not self.path:
            raise ConfigError(f"model {self.name!r}: give either path (local model) or base_url (endpoint)")
        args = {"pretrained": self.path, "device": "cpu", "dtype": "float32"}
        return "hf", args | {k: v for k, v in (("gguf_file", self.gguf_file), ("peft", self.peft)) if v}


def lm_eval_tasks_dir() -> Path:
    """Folder of lm-eval's built-in task YAMLs, which our templates include."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise SetupError("evaluation needs lm-eval: run `pip install 'lm-eval[hf,api,math,ifeval]'`")
    return Path(next(iter(spec.submodule_search_locations))) / "tasks"


def prepare_tasks(names: list[str], task_dir: Path, limit: int | None) -> list[str]:
    """Materialise each benchmark's data, write its filled-in task YAML to `task_dir`; return task names."""
    task_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name not in benchmarks.BENCHMARKS:
            raise ConfigError(f"unknown benchmark {name!r}; choose from {', '.join(benchmarks.BENCHMARKS)}")
        source = (TEMPLATES / f"{name}.yaml").read_text(encoding="utf-8")
        values = {"LM_EVAL_TASKS": str(lm_eval_tasks_dir())}
        for key in set(re.findall(r"\$\{(\w+)\}", source)) - set(values):
            bench, split = key.rsplit("_", 1)
            values[key] = str(benchmarks.materialize(bench, split, limit if split == "test" else None))
        (task_dir / f"{name}.yaml").write_text(string.Template(source).substitute(values), encoding="utf-8")
    return [f"glan_{name}" for name in names]


def _use_offline_nltk_data() -> None:
    """IFEval's checker needs NLTK punkt_tab; the llama-index-core wheel ships it, so no download."""
    import nltk

    spec = importlib.util.find_spec("llama_index")
    for root in spec.submodule_search_locations if spec else []:
        cache = Path(root) / "core" / "_static" / "nltk_cache"
        if cache.is_dir() and str(cache) not in nltk.data.path:
            nltk.data.path.append(str(cache))


@dataclass(frozen=True)
class BenchmarkScore:
    """One measured number: a model's score on one benchmark metric, with its sample size and run time."""

    model: str
    benchmark: str
    metric: str
    value: float
    n: int
    seconds: float


def run_benchmarks(spec: ModelSpec, settings: EvalSettings, out_dir: Path) -> list[BenchmarkScore]:
    """Evaluate one model on the configured benchmarks; raw lm-eval results go to `out_dir/lm_eval/`."""
    from lm_eval import simple_evaluate
    from lm_eval.api.registry import get_model
    from lm_eval.tasks import TaskManager

    _use_offline_nltk_data()
    task_dir = out_dir / "tasks"
    tasks = prepare_tasks(settings.benchmarks, task_dir, settings.limit)
    manager = TaskManager(include_path=str(task_dir))
    model_type, model_args = spec.lm_eval_args()
    lm = get_model(model_type)(**model_args, batch_size=settings.batch_size)
    gen_kwargs = {"max_gen_toks": settings.max_gen_toks} if settings.max_gen_toks else None
    scores = []
    for name, task in zip(settings.benchmarks, tasks, strict=True):
        start = time.perf_counter()
        output = simple_evaluate(
            model=lm,
            tasks=[task],
            task_manager=manager,
            gen_kwargs=gen_kwargs,
            apply_chat_template=spec.chat,
            confirm_run_unsafe_code=True,
            log_samples=False,
        )
        seconds = time.perf_counter() - start
        results, n = output["results"][task], output["n-samples"][task]["effective"]
        raw = out_dir / "lm_eval" / spec.name / f"{name}.json"
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(json.dumps({"results": results, "configs": output["configs"]}, indent=1, default=str))
        scores += [
            BenchmarkScore(spec.name, label, key.split(",")[0], float(results[key]), n, seconds)
            for label, key in METRICS[name].items()
        ]
    return scores


def save_scores(scores: list[BenchmarkScore], path: Path) -> Path:
    """Write measured scores as a JSON list (one object per model x benchmark metric)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(score) for score in scores], indent=1), encoding="utf-8")
    return path


def model_specs(models: list[dict[str, Any]], run_dir: Path, tuned_preset: str | None = "cpu-demo") -> list[ModelSpec]:
    """The models a notebook compares. An entry with neither `path` nor `base_url` means the demo model
    (SmolLM2-135M GGUF from PyPI); the run's fine-tuned adapter, when one exists, is added as `tuned` so base and
    tuned are scored side by side."""
    from glan_utils.llm.embedded import resolve_model  # light: finds the GGUF file without loading it

    demo = resolve_model("smollm2").path
    fallback = {"path": str(demo.parent), "gguf_file": demo.name}
    specs = [ModelSpec(**(m if m.get("path") or m.get("base_url") else {**fallback, **m})) for m in models]
    adapter = run_dir / "finetune" / tuned_preset if tuned_preset else None
    if adapter is not None and (adapter / "adapter_config.json").exists() and not any(s.peft for s in specs):
        specs.append(ModelSpec(name="tuned", peft=str(adapter), **fallback))
    return specs


def load_hf_model(spec: ModelSpec) -> tuple[Any, Any]:
    """A local spec's model (with its LoRA adapter applied) and tokenizer, e.g. for the loss-gap check."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not spec.path:
        raise ConfigError(f"model {spec.name!r}: the loss-gap check needs a local model (path)")
    kwargs = {"gguf_file": spec.gguf_file} if spec.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(spec.path, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(spec.path, **kwargs)
    return (PeftModel.from_pretrained(model, spec.peft) if spec.peft else model), tokenizer
