"""Benchmark evaluation with lm-evaluation-harness, fed offline from `glan_utils.data.benchmarks`.

Each benchmark is a catalog record (`settings/benchmarks.py`) naming a task YAML under `glan_utils/evaluation/tasks/`
per protocol (and, for code, a chat models' variant); the YAMLs `include:` lm-eval's built-in task or each other and
read a JSONL file. The templates name the installed lm-eval and the data files with `${...}` placeholders, filled in
here (into the run's task folder, with every template they include), because lm-eval resolves `include:` as a file
path. Models are a local HF/GGUF checkpoint (optionally plus a LoRA adapter)
or an OpenAI-compatible endpoint; one model object is built per model and reused across benchmarks."""

from __future__ import annotations

import importlib.util
import json
import re
import string
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from glan_utils.core.errors import ConfigError, InputError, SetupError
from glan_utils.core.paths import FINETUNE
from glan_utils.data import benchmarks
from glan_utils.evaluation.stats import wilson_interval
from glan_utils.evaluation.unscored import NotScored, attempt
from glan_utils.settings.benchmarks import BY_NAME, CATALOG, LABELS, Benchmark, Protocol, ProtocolSpec
from glan_utils.settings.evaluation import EvalSettings
from glan_utils.train.models import load_causal_lm

TEMPLATES = Path(__file__).resolve().parent / "tasks"


def protocol_spec(benchmark: str, protocol: Protocol) -> ProtocolSpec:
    """How a benchmark runs under a protocol (its catalog record's)."""
    return BY_NAME[benchmark].protocols[protocol]


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate: a local checkpoint (`path`, `gguf_file`, `peft`) or an endpoint (`base_url`).

    `chat`: wrap prompts in the model's chat template; None (default) means yes for an endpoint and for a local
    model whose tokenizer has a template, no for a base model (it has none and never saw one)."""

    name: str
    path: str | None = None
    gguf_file: str | None = None
    peft: str | None = None
    base_url: str | None = None
    model: str | None = None
    tokenizer: str | None = None  # a base model's endpoint: a Hugging Face tokenizer, or "remote" (vLLM's /tokenize)
    chat: bool | None = None

    def lm_eval_args(self, settings: EvalSettings | None = None) -> tuple[str, dict[str, Any]]:
        """lm-eval model type and constructor arguments; a local model runs where `settings` say (device, dtype,
        backend: vLLM with tensor parallelism over the node's GPUs when installed)."""
        if self.base_url:
            args = {"model": self.model or "default", "tokenizer_backend": None, "tokenized_requests": False}
            if self.chat is not False:
                return "local-chat-completions", args | {"base_url": f"{self.base_url}/chat/completions"}
            if self.tokenizer == "remote":  # multiple-choice tasks need prompt logprobs: the server's /tokenize
                args |= {"tokenizer_backend": "remote", "tokenized_requests": True}
            elif self.tokenizer:  # ... or a local Hugging Face tokenizer
                args |= {"tokenizer_backend": "huggingface", "tokenizer": self.tokenizer}
            return "local-completions", args | {"base_url": f"{self.base_url}/completions"}
        if not self.path:
            raise ConfigError(f"model {self.name!r}: give either path (local model) or base_url (endpoint)")
        device, dtype, gpus = _placement(settings or EvalSettings())
        if _use_vllm(self, settings or EvalSettings(), gpus):
            size = (settings.tensor_parallel_size if settings else None) or gpus
            args = {"pretrained": self.path, "dtype": dtype, "tensor_parallel_size": size}
            return "vllm", args | ({"lora_local_path": self.peft} if self.peft else {})
        args = {"pretrained": self.path, "device": device, "dtype": dtype}
        return "hf", args | {k: v for k, v in (("gguf_file", self.gguf_file), ("peft", self.peft)) if v}


def _placement(settings: EvalSettings) -> tuple[str, str, int]:
    """Device, dtype and visible GPU count for local models: 'auto' is cuda + bfloat16 when a GPU is visible."""
    import torch

    gpus = torch.cuda.device_count()
    device = settings.device if settings.device != "auto" else ("cuda" if gpus else "cpu")
    dtype = settings.dtype if settings.dtype != "auto" else ("float32" if device == "cpu" else "bfloat16")
    return device, dtype, gpus


def _use_vllm(spec: ModelSpec, settings: EvalSettings, gpus: int) -> bool:
    """vLLM when asked, or on 'auto' when it is installed, a GPU is visible and the model is not a GGUF file."""
    if settings.backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise SetupError("evaluation.backend 'vllm' needs vLLM: run `pip install vllm`")
        return True
    installed = importlib.util.find_spec("vllm") is not None
    return settings.backend == "auto" and gpus > 0 and not spec.gguf_file and installed


def lm_eval_tasks_dir() -> Path:
    """Folder of lm-eval's built-in task YAMLs, which our templates include."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise SetupError("evaluation needs lm-eval: run `pip install 'lm-eval[hf,api,math,ifeval]'`")
    return Path(next(iter(spec.submodule_search_locations))) / "tasks"


def _write_template(
    file: str, task_dir: Path, limit: int | None, values: dict[str, str] | None = None, out: str | None = None
) -> None:
    """Fill one task template's placeholders into `task_dir` (as `out`), and each local template it includes.

    `${LM_EVAL_TASKS}` is lm-eval's task folder; any other `${<benchmark>_<split>}` is that split's JSONL, written
    by `materialize` (`limit` items of a test split)."""
    source = (TEMPLATES / file).read_text(encoding="utf-8")
    values = {"LM_EVAL_TASKS": str(lm_eval_tasks_dir()), **(values or {})}
    for key in set(re.findall(r"\$\{(\w+)\}", source)) - set(values):
        bench, split = key.rsplit("_", 1)
        values[key] = str(benchmarks.materialize(bench, split, limit if split == "test" else None))
    for included in re.findall(r"^include:\s*(\S+)\s*$", source, re.MULTILINE):
        if not included.startswith("$"):
            _write_template(included, task_dir, limit, values)
    (task_dir / (out or file)).write_text(string.Template(source).substitute(values), encoding="utf-8")


def prepare_tasks(
    names: list[str],
    task_dir: Path,
    limit: int | None,
    protocols: dict[str, Protocol] | None = None,
    chat: bool = False,
) -> list[str]:
    """Materialise each offline benchmark's data, write its filled-in task YAML to `task_dir`; return task names.

    `protocols` picks each benchmark's protocol (default: `lm_eval` where it has one), `chat` the chat models'
    template where the catalog has one."""
    task_dir.mkdir(parents=True, exist_ok=True)
    tasks = []
    for name in names:
        if name not in benchmarks.BENCHMARKS:
            raise ConfigError(f"unknown benchmark {name!r}; choose from {', '.join(benchmarks.BENCHMARKS)}")
        protocol = BY_NAME[name].protocol((protocols or {}).get(name, "lm_eval"))
        template = protocol_spec(name, protocol).template_for(chat)
        _write_template(f"{template}.yaml", task_dir, limit)
        tasks.append(f"glan_{template}")
    return tasks


def not_run(settings: EvalSettings) -> list[tuple[str, str]]:
    """The paper's benchmarks this configuration does not score, each with the reason: no offline source (the
    Evol-Instruct test set), no local copy configured (BBH), or not asked for in `evaluation.benchmarks`."""
    rows = []
    for entry in CATALOG:
        if not entry.protocols or (entry.local_copy and not getattr(settings, entry.local_copy)):
            rows.append((entry.name, entry.missing))
        elif entry.name not in settings.benchmarks:
            rows.append((entry.name, "not in `evaluation.benchmarks`"))
    return rows


def prepare_local_copy(entry: Benchmark, source: str, task_dir: Path, limit: int | None, chat: bool) -> list[str]:
    """Task YAMLs for a benchmark read from a local copy in BIG-Bench-Hard's layout (a folder of `<task>.json`
    files holding `examples`): one task per file lm-eval knows, `limit` items per task, evenly spread."""
    folder = Path(source).expanduser()
    template = protocol_spec(entry.name, "paper").template_for(chat)
    known = {p.stem for p in (lm_eval_tasks_dir() / "bbh" / "cot_fewshot").glob("[!_]*.yaml")}
    files = sorted(p for p in folder.glob("*.json") if p.stem in known) if folder.is_dir() else []
    if not files:
        raise InputError(
            f"evaluation.{entry.local_copy} {folder}: no {entry.name.upper()} task files (<task>.json, "
            "e.g. navigate.json)"
        )
    task_dir.mkdir(parents=True, exist_ok=True)
    tasks = []
    for path in files:
        examples = json.loads(path.read_text(encoding="utf-8"))["examples"]
        step = max(len(examples) / limit, 1.0) if limit else 1.0
        chosen = [examples[int(i * step)] for i in range(min(limit or len(examples), len(examples)))]
        data = task_dir / f"{entry.name}-{path.stem}.jsonl"
        data.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in chosen), encoding="utf-8")
        out = f"{template}_{path.stem}.yaml"
        _write_template(f"{template}.yaml", task_dir, limit, {"SUBTASK": path.stem, "DATA": str(data)}, out)
        tasks.append(f"glan_{template}_{path.stem}")
    return tasks


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
    """One measured number: a model's score on one benchmark metric under a protocol, with its sample size,
    lm-eval's standard error, a 95% Wilson interval and the run time."""

    model: str
    benchmark: str
    metric: str
    value: float
    n: int
    seconds: float
    protocol: str = "lm_eval"
    stderr: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    items: dict[str, float] | None = None  # per-item score by "<task>/<doc_id>", for the paired base-vs-tuned test

    @property
    def protocol_note(self) -> str:
        """The protocol in words, from the catalog record of the benchmark this label belongs to."""
        entry = BY_NAME.get(LABELS.get(self.benchmark, self.benchmark))
        spec = entry.protocols.get(self.protocol) if entry else None  # type: ignore[call-overload]
        return spec.note if spec else self.protocol


def _items(samples: dict[str, list[dict[str, Any]]], key: str) -> dict[str, float] | None:
    """Each item's score for one metric key from lm-eval's logged samples (every subtask of a group), or None
    where the metric is not a number per item (e.g. IFEval's per-instruction lists)."""
    metric, filt = key.split(",")
    items = {
        f"{task}/{sample['doc_id']}": float(sample[metric])
        for task, logged in samples.items()
        for sample in logged
        if sample.get("filter") == filt and isinstance(sample.get(metric), int | float)
    }
    return items or None


def _score(
    spec: ModelSpec,
    label: str,
    key: str,
    results: dict[str, Any],
    n: int,
    seconds: float,
    protocol: str,
    samples: dict[str, list[dict[str, Any]]],
) -> BenchmarkScore:
    """A BenchmarkScore from lm-eval's results and logged samples for one metric key (its stderr key is
    `<metric>_stderr,<filter>`)."""
    metric, filt = key.split(",")
    stderr = results.get(f"{metric}_stderr,{filt}")
    value = float(results[key])
    low, high = wilson_interval(value, n)
    return BenchmarkScore(
        spec.name,
        label,
        metric,
        value,
        n,
        seconds,
        protocol,
        float(stderr) if isinstance(stderr, int | float) else None,
        low,
        high,
        _items(samples, key),
    )


def run_benchmarks(
    spec: ModelSpec, settings: EvalSettings, out_dir: Path, unscored: list[NotScored] | None = None
) -> list[BenchmarkScore]:
    """Evaluate one model on the configured benchmarks; raw lm-eval results go to `out_dir/lm_eval/`.

    With `unscored` given, a benchmark that fails (or all, when the model does not load) is appended there with
    its reason and the others still run; without, the error is raised."""
    if unscored is None:
        return _run_benchmarks(spec, settings, out_dir, None)
    scores = attempt(
        spec.name, ", ".join(settings.benchmarks), unscored, _run_benchmarks, spec, settings, out_dir, unscored
    )
    return scores or []


def _run_benchmarks(
    spec: ModelSpec, settings: EvalSettings, out_dir: Path, unscored: list[NotScored] | None
) -> list[BenchmarkScore]:
    from lm_eval import simple_evaluate
    from lm_eval.api.registry import get_model
    from lm_eval.tasks import TaskManager

    _use_offline_nltk_data()
    task_dir = out_dir / "tasks"
    model_type, model_args = spec.lm_eval_args(settings)
    lm = get_model(model_type)(**model_args, batch_size=settings.batch_size)
    chat = _applies_chat_template(spec, lm)  # also picks each benchmark's chat or base task
    protocols = {name: settings.protocol_of(name) for name in settings.benchmarks}
    groups = []  # (benchmark, its lm-eval tasks); one whose tasks cannot be written is unscored, with the reason
    for name in settings.benchmarks:
        prepare = partial(_tasks_of, name, settings, task_dir, protocols[name], chat)
        tasks = prepare() if unscored is None else attempt(spec.name, name, unscored, prepare)
        if tasks:
            groups.append((name, tasks))
    manager = TaskManager(include_path=str(task_dir))
    scores = []
    for name, group in groups:
        start = time.perf_counter()
        evaluate = partial(
            simple_evaluate,
            model=lm,
            tasks=group,
            task_manager=manager,
            gen_kwargs=_gen_kwargs(name, settings),
            apply_chat_template=chat,
            confirm_run_unsafe_code=True,
            log_samples=True,  # per-item scores: base and tuned are compared item by item
        )
        output = evaluate() if unscored is None else attempt(spec.name, name, unscored, evaluate)
        if output is None:
            continue
        seconds = time.perf_counter() - start
        results, n = _pooled(output, group)
        raw = out_dir / "lm_eval" / spec.name / f"{name}.json"
        raw.parent.mkdir(parents=True, exist_ok=True)
        record = {"results": results, "per_task": output["results"], "configs": output["configs"]}
        raw.write_text(json.dumps(record, indent=1, default=str))
        metrics = protocol_spec(name, protocols[name]).metrics
        samples = output.get("samples") or {}
        scores += [
            _score(spec, label, key, results, n, seconds, protocols[name], samples) for label, key in metrics.items()
        ]
    return scores


def _tasks_of(name: str, settings: EvalSettings, task_dir: Path, protocol: Protocol, chat: bool) -> list[str]:
    """A benchmark's lm-eval tasks, written to `task_dir`: from its offline data, or from its local copy when one is
    configured (none: no tasks, and `not_run` says why)."""
    entry = BY_NAME[name]
    if entry.loader:
        return prepare_tasks([name], task_dir, settings.limit, {name: protocol}, chat)
    copy = getattr(settings, entry.local_copy) if entry.local_copy else None
    return prepare_local_copy(entry, copy, task_dir, settings.limit, chat) if copy else []


def _applies_chat_template(spec: ModelSpec, lm: Any) -> bool:
    """`spec.chat` when set; else an endpoint is a chat model and a local one is when its tokenizer has a template."""
    if spec.chat is not None:
        return spec.chat
    return spec.base_url is not None or bool(getattr(lm.tokenizer, "chat_template", None))


def _gen_kwargs(benchmark: str, settings: EvalSettings) -> dict[str, int] | None:
    """The generation cap for a benchmark: `max_gen_toks`, except for those that keep their own (IFEval: 1280)."""
    if not settings.max_gen_toks or BY_NAME[benchmark].own_budget:
        return None
    return {"max_gen_toks": settings.max_gen_toks}


def _pooled(output: dict[str, Any], tasks: list[str]) -> tuple[dict[str, Any], int]:
    """One task's results and n; for several (BBH's tasks) the micro-average of each metric over all items."""
    if len(tasks) == 1:
        return output["results"][tasks[0]], output["n-samples"][tasks[0]]["effective"]
    sizes = {task: output["n-samples"][task]["effective"] for task in tasks}
    keys = [k for k, v in output["results"][tasks[0]].items() if isinstance(v, int | float) and "_stderr" not in k]
    total = sum(sizes.values())
    pooled = {k: sum(output["results"][t][k] * sizes[t] for t in tasks) / total for k in keys}
    return pooled, total


def save_scores(scores: list[BenchmarkScore], path: Path) -> Path:
    """Write measured scores as a JSON list (one object per model x benchmark metric, protocol in words)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [asdict(score) | {"protocol_note": score.protocol_note} for score in scores]
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return path


def model_specs(models: list[dict[str, Any]], run_dir: Path, tuned_preset: str | None = "cpu-demo") -> list[ModelSpec]:
    """The models a notebook compares. An entry with neither `path` nor `base_url` means the demo model
    (SmolLM2-135M GGUF from PyPI); the run's fine-tuned adapter (LoRA) or model (full fine-tuning), when one
    exists, is added as `tuned` so base and tuned are scored side by side."""
    from glan_utils.llm.embedded import find_gguf  # light: finds the GGUF file without loading it

    demo = find_gguf("smollm2").path
    fallback = {"path": str(demo.parent), "gguf_file": demo.name}
    specs = [ModelSpec(**(m if m.get("path") or m.get("base_url") else {**fallback, **m})) for m in models]
    adapter = run_dir / FINETUNE / tuned_preset if tuned_preset else None
    if adapter is None or any(s.peft or s.name == "tuned" for s in specs):
        return specs
    if (adapter / "adapter_config.json").exists():
        specs.append(ModelSpec(name="tuned", peft=str(adapter), **fallback))
    elif (adapter / "config.json").exists():
        specs.append(ModelSpec(name="tuned", path=str(adapter)))
    return specs


def load_hf_model(spec: ModelSpec) -> tuple[Any, Any]:
    """A local spec's model (with its LoRA adapter applied) and tokenizer, e.g. for the loss-gap check."""
    if not spec.path:
        raise ConfigError(f"model {spec.name!r}: the loss-gap check needs a local model (path)")
    return load_causal_lm(spec.path, spec.gguf_file, spec.peft)
