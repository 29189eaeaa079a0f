"""The dataset card: `README.md` with a Hugging Face YAML header, saying how the data set was made.

It records the taxonomy (disciplines), models and prompts (names + hashes, from each record's provenance),
sampling settings, counts per discipline and difficulty, the duplicate and contamination figures, and the cost
read from the run's `ledger.jsonl`; it ends with the run card (`data/run_card.py`) as JSON. Statistics come from
the exported `qa.parquet` by columnar group-bys, never row by row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from glan_utils.core.jsonl import iter_jsonl
from glan_utils.core.paths import CONFIG, LEDGER, QA_TABLE
from glan_utils.data.run_card import build_run_card, card_section, write_run_card
from glan_utils.llm.ledger import summarize

_LANGUAGE_CODES = {
    "english": "en",
    "chinese": "zh",
    "french": "fr",
    "german": "de",
    "spanish": "es",
    "japanese": "ja",
    "russian": "ru",
    "portuguese": "pt",
    "italian": "it",
    "korean": "ko",
}
_SIZES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
)
_SAMPLING_SECTIONS = ("subjects", "syllabi", "questions", "answers")
_INTRO = """Synthetic question/answer pairs generated with the GLAN recipe (Generalized Instruction Tuning,
arXiv 2402.13064): taxonomy of human knowledge -> subjects -> syllabi -> homework questions -> answers.
`test` is a held-out GLAN-Test split sampled per discipline.

```python
from datasets import load_from_disk
ds = load_from_disk("hf")  # or: load_dataset("json", data_files={"train": "train.jsonl", ...})
```"""


def size_category(n: int) -> str:
    """The Hub's `size_categories` bucket for `n` rows."""
    return next((label for bound, label in _SIZES if n < bound), "n>100M")


def _group(table_path: Path, keys: list[str]) -> list[dict[str, Any]]:
    table = pq.read_table(table_path, columns=[*keys, "id"])
    rows = table.group_by(keys).aggregate([("id", "count")]).to_pylist()
    return sorted(rows, key=lambda r: [str(r[k]) for k in keys])


def dataset_stats(table_path: Path) -> dict[str, Any]:
    """Counts per split/discipline/difficulty, the taxonomy, prompts+models and sampling params used."""
    prompts = [
        {
            "stage": stage,
            "prompt": r[f"{stage}_prompt"],
            "hash": r[f"{stage}_prompt_hash"],
            "model": r[f"{stage}_model"],
            "records": r["id_count"],
        }
        for stage in ("question", "answer")
        for r in _group(table_path, [f"{stage}_prompt", f"{stage}_prompt_hash", f"{stage}_model"])
    ]
    params = [
        {"stage": stage, "params": r[f"{stage}_params"], "records": r["id_count"]}
        for stage in ("question", "answer")
        for r in _group(table_path, [f"{stage}_params"])
    ]
    return {
        "turns": _turns(table_path),
        "counts": _group(table_path, ["split", "discipline", "difficulty"]),
        "taxonomy": _group(table_path, ["field", "subfield", "discipline"]),
        "languages": [r["language"] for r in _group(table_path, ["language"])],
        "prompts": prompts,
        "params": params,
    }


def _turns(table_path: Path) -> list[dict[str, int]]:
    """Rows per number of user turns (1 = a single-turn pair; more = follow-up rounds after the answer)."""
    followups = pq.read_table(table_path, columns=["followups"])["followups"]
    turns = pc.add(pc.divide(pc.list_value_length(followups).fill_null(0), 2), 1)
    return sorted(({"turns": r["values"], "records": r["counts"]} for r in pc.value_counts(turns).to_pylist()), key=str)


def _header(report: dict[str, Any], stats: dict[str, Any], license_id: str, pretty_name: str) -> str:
    languages = [_LANGUAGE_CODES.get(str(lang).lower(), str(lang).lower()) for lang in stats["languages"]]
    header = {
        "license": license_id,
        "language": languages or ["en"],
        "pretty_name": pretty_name,
        "task_categories": ["text-generation", "question-answering"],
        "size_categories": [size_category(report["kept"])],
        "tags": ["synthetic", "glan", "instruction-tuning"],
        "configs": [
            {
                "config_name": "default",
                "data_files": [
                    {"split": "train", "path": "train.jsonl"},
                    {"split": "test", "path": "test.jsonl"},
                ],
            }
        ],
    }
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n"


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")).replace("|", "\\|") for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _cost(run_dir: Path) -> str:
    ledger = run_dir / LEDGER
    if not ledger.exists():
        return "No `ledger.jsonl` in the run directory: cost unknown."
    rows = [{"stage": stage} | totals.as_dict() for stage, totals in summarize(iter_jsonl(ledger)).items()]
    for row in rows:
        row["cost_usd"] = f"{row['cost_usd']:.4f}"
    return _table(rows, ["stage", "calls", "cached", "failed", "prompt_tokens", "completion_tokens", "cost_usd"])


def _sampling(run_dir: Path, stats: dict[str, Any]) -> str:
    config_path = run_dir / CONFIG
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
    sections = {k: config[k] for k in _SAMPLING_SECTIONS if k in (config or {})}
    text = "```yaml\n" + yaml.safe_dump(sections, sort_keys=False) + "```\n\n" if sections else ""
    return (
        text
        + "Parameters sent with the calls (from record provenance):\n\n"
        + _table(stats["params"], ["stage", "params", "records"])
    )


def _removals(report: dict[str, Any]) -> str:
    lines = [
        f"- input records: {report['records']}",
        f"- exact duplicates removed (normalised question hash): {report['exact_duplicates']}",
        f"- near duplicates removed (MinHash LSH, {report['lsh']}): {report['near_duplicates']}",
        f"- contaminated records removed ({report['ngram']}-gram overlap): {report['contaminated']}",
        f"- removed for quality (see below): {report.get('quality_removed', 0)}",
        f"- kept: {report['kept']} (train {report['train']}, test {report['test']})",
    ]
    bench = [{"benchmark": name} | figures for name, figures in report["benchmarks"].items()]
    return "\n".join(lines) + "\n\nPer benchmark:\n\n" + _table(bench, ["benchmark", "flagged", "removed"])


def _plan(report: dict[str, Any]) -> str:
    """Which taxonomy and review the data set follows, and the stored pairs it leaves out for that, by reason."""
    built = report.get("built_from") or {}
    version = (
        f"Built from taxonomy version `{built.get('taxonomy_version')}` and review `{built.get('review') or 'none'}`"
        " (the run's `plan.json`): only pairs under the kept disciplines and in the current plan of every stage,"
        " train and test alike, under the disciplines' current names."
    )
    left = [{"reason": reason, "pairs": n} for reason, n in (report.get("excluded") or {}).items()]
    return version + ("\n\nStored pairs left out:\n\n" + _table(left, ["reason", "pairs"]) if left else "")


def _quality(report: dict[str, Any]) -> str:
    """Pairs the quality filter removed (not in the paper), by reason and per discipline, and the rule flags of the
    pairs it kept (warnings, or every rule while the filter is off)."""
    quality = report.get("quality") or {}
    flagged = [{"rule": rule, "pairs": n} for rule, n in (quality.get("flagged_kept") or {}).items()]
    kept = (
        "\n\nRule flags on pairs kept (warning rules, or every rule while `dataset.quality.enabled` is false):\n\n"
        + _table(flagged, ["rule", "pairs"])
        if flagged
        else ""
    )
    if not quality.get("by_reason"):
        return "No pair was removed for quality (rule flags, judge score, verifier disagreement, regeneration)." + kept
    reasons = [{"reason": reason, "removed": n} for reason, n in quality["by_reason"].items()]
    return (
        f"Not in the GLAN paper: {report.get('quality_removed', 0)} pairs removed for quality "
        "(a pair counts under every reason it has).\n\n"
        + _table(reasons, ["reason", "removed"])
        + "\n\nPer discipline:\n\n"
        + _table(quality["by_discipline"], ["discipline", "reason", "removed"])
        + kept
    )


def render_card(
    report: dict[str, Any],
    stats: dict[str, Any],
    run_dir: Path,
    license_id: str = "other",
    pretty_name: str | None = None,
) -> str:
    """The full README.md text for an exported data set."""
    name = pretty_name or f"GLAN synthetic instructions ({run_dir.name})"
    counts = [r | {"records": r.pop("id_count")} for r in (dict(c) for c in stats["counts"])]
    taxonomy = [r | {"records": r.pop("id_count")} for r in (dict(t) for t in stats["taxonomy"])]
    sections = [
        _header(report, stats, license_id, name),
        f"# {name}\n\n{_INTRO}",
        "## Taxonomy\n\n" + _table(taxonomy, ["field", "subfield", "discipline", "records"]),
        "## Counts per split, discipline and difficulty\n\n"
        + _table(counts, ["split", "discipline", "difficulty", "records"]),
        "## Models and prompts\n\n" + _table(stats["prompts"], ["stage", "prompt", "hash", "model", "records"]),
        "## Sampling settings\n\n" + _sampling(run_dir, stats),
        "## Taxonomy version and plan\n\n" + _plan(report),
        "## Deduplication and decontamination\n\n" + _removals(report),
        "## Quality filter\n\n" + _quality(report),
        "## Turns\n\nUser turns per row; more than 1 = follow-up rounds after the answer (not in the paper).\n\n"
        + _table(stats["turns"], ["turns", "records"]),
        "## Cost\n\n" + _cost(run_dir),
        card_section(build_run_card(run_dir, report)),
    ]
    return "\n\n".join(sections) + "\n"


def write_card(
    out_dir: Path,
    report: dict[str, Any],
    run_dir: Path,
    license_id: str = "other",
    pretty_name: str | None = None,
) -> dict[str, Any]:
    """Write `out_dir/README.md` from `out_dir/qa.parquet` and the run's `run_card.json`; returns the statistics."""
    write_run_card(run_dir, report)
    stats = dataset_stats(out_dir / QA_TABLE)
    card = render_card(report, stats, run_dir, license_id, pretty_name)
    (out_dir / "README.md").write_text(card, encoding="utf-8")
    return stats
