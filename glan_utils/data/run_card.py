"""The run card: one machine-readable `run_card.json` per run saying exactly how its data (and model) were made.

It holds the taxonomy and review hashes, every prompt template's hash, the models and endpoints, the seeds,
the cost per stage, the data set's statistics, the fine-tune's result and the evaluation scores with their
protocols — everything read from files the run already wrote, so it can be rebuilt at any time. The dataset
card (`data/card.py`) and the fine-tuned model's card (`train/sft.py`) embed it between markers, and
`refresh_cards` rewrites that section after a later stage (the evaluation) has added to it. It lives in `data/`
so both cards can import it (the layers above may, `app/` may not be imported from here).

Credentials never enter it: keys whose name mentions a key, token, secret or password are dropped, and user
info is stripped from URLs."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from glan_utils.core.jsonl import iter_jsonl
from glan_utils.core.paths import CONFIG, DATASET, DATASET_REPORT, EVALUATION, FINETUNE, LEDGER, QA_TABLE, REVIEWS
from glan_utils.core.records import TaxonomyNode
from glan_utils.llm.ledger import summarize
from glan_utils.llm.prompts import PROMPTS_DIR, template_hash

CARD_FILE = "run_card.json"
SCHEMA = "glan-run-card/1"
START, END = "<!-- run-card:start -->", "<!-- run-card:end -->"
_SECRET = re.compile(r"key|token|secret|password", re.IGNORECASE)
_ENDPOINT_KEYS = ("model", "base_url", "base_urls", "judge_model", "provider")


def file_hash(path: Path) -> str | None:
    """sha256 of a file's bytes (first 16 hex digits), None when absent."""
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _clean_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.hostname or "")) if parts.username or parts.password else url


def _walk(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a nested config, secrets skipped."""
    if isinstance(config, dict):
        for key, value in config.items():
            if not _SECRET.search(str(key)):
                yield from _walk(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), config


def _models_and_endpoints(config: dict[str, Any]) -> dict[str, Any]:
    found = {}
    for key, value in _walk(config):
        if key.rsplit(".", 1)[-1] in _ENDPOINT_KEYS and value not in (None, [], ""):
            found[key] = [_clean_url(v) for v in value] if isinstance(value, list) else _clean_url(str(value))
    return found


def _seeds(config: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in _walk(config) if key.rsplit(".", 1)[-1] == "seed"}


def _taxonomy(run_dir: Path) -> dict[str, Any]:
    reviews = sorted((run_dir / REVIEWS).glob("*.json"))
    records = run_dir / f"{TaxonomyNode.stage_name}.jsonl"
    return {
        "records_hash": file_hash(records),
        "nodes": sum(1 for _ in iter_jsonl(records)) if records.is_file() else 0,
        "reviews": {path.name: file_hash(path) for path in reviews},
    }


def _costs(run_dir: Path) -> dict[str, Any]:
    ledger = run_dir / LEDGER
    if not ledger.is_file():
        return {}
    return {stage: totals.as_dict() for stage, totals in summarize(iter_jsonl(ledger)).items()}


def _data(run_dir: Path, report: dict[str, Any] | None) -> dict[str, Any] | None:
    report = report or _read_json(run_dir / DATASET / DATASET_REPORT)
    if report is None:
        return None
    keys = ("records", "exact_duplicates", "near_duplicates", "contaminated", "kept", "train", "test", "lsh", "ngram")
    return {key: report.get(key) for key in keys} | {
        "built_from": report.get("built_from", {}),
        "left_out_of_plan": report.get("excluded", {}),
        "removed_per_benchmark": report.get("benchmarks", {}),
        "files": {name: file_hash(run_dir / DATASET / name) for name in ("train.jsonl", "test.jsonl", QA_TABLE)},
    }


def _finetune(run_dir: Path) -> dict[str, Any]:
    return {path.parent.name: _read_json(path) for path in sorted((run_dir / FINETUNE).glob("*/train_result.json"))}


def _evaluation(run_dir: Path) -> dict[str, Any] | None:
    folder = run_dir / EVALUATION
    if not folder.is_dir():
        return None
    scores = _read_json(folder / "benchmarks.json")
    return {  # per-item scores stay in benchmarks.json: the card carries the numbers
        "benchmarks": [{k: v for k, v in row.items() if k != "items"} for row in scores] if scores else scores,
        "glan_test_pairwise": _read_json(folder / "glan_test_pairwise_overall.json"),
        "glan_test_reference": _read_json(folder / "glan_test_reference_by_difficulty.json"),
        "loss_gap": _read_json(folder / "loss_gap.json"),
    }


def build_run_card(run_dir: str | Path, report: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run card of a run directory, from what its stages wrote (missing stages are null); `report` is the
    data set report when it is not on disk yet (the dataset card is written before `report.json`)."""
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    config = config or {}
    return {
        "schema": SCHEMA,
        "run": run_dir.name,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config_hash": file_hash(config_path),
        "taxonomy": _taxonomy(run_dir),
        "prompts": {path.stem: template_hash(path.stem) for path in sorted(PROMPTS_DIR.glob("*.jinja"))},
        "models_and_endpoints": _models_and_endpoints(config),
        "seeds": _seeds(config),
        "costs": _costs(run_dir),
        "data": _data(run_dir, report),
        "finetune": _finetune(run_dir),
        "evaluation": _evaluation(run_dir),
    }


def write_run_card(run_dir: str | Path, report: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the run card and write it as `<run>/run_card.json`; returns it."""
    card = build_run_card(run_dir, report)
    (Path(run_dir) / CARD_FILE).write_text(json.dumps(card, indent=1, default=str) + "\n", encoding="utf-8")
    return card


def card_section(card: dict[str, Any]) -> str:
    """The markdown section a dataset or model card embeds: a summary line and the full card as JSON."""
    evaluated = "with evaluation scores" if card.get("evaluation") else "no evaluation yet"
    body = json.dumps(card, indent=1, default=str)
    return (
        f"{START}\n## Run card\n\nHow this was made, machine-readable (`{CARD_FILE}`, schema `{card['schema']}`, "
        f"{evaluated}):\n\n```json\n{body}\n```\n{END}"
    )


def embed(text: str, card: dict[str, Any]) -> str:
    """`text` with its run-card section replaced by (or, when it has none, ended with) the current card."""
    section = card_section(card)
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: section, text, count=1)
    return text.rstrip("\n") + "\n\n" + section + "\n"


def refresh_cards(run_dir: str | Path) -> dict[str, Any]:
    """Rewrite `run_card.json` and the run-card section of the dataset card and of every fine-tune's card."""
    run_dir = Path(run_dir)
    card = write_run_card(run_dir)
    for readme in [run_dir / DATASET / "README.md", *sorted((run_dir / FINETUNE).glob("*/README.md"))]:
        if readme.is_file():
            readme.write_text(embed(readme.read_text(encoding="utf-8"), card), encoding="utf-8")
    return card
