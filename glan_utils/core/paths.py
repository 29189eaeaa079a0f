"""Where things live on disk: the per-user workbench cache, writable run directories and their layout."""

from __future__ import annotations

import os
from pathlib import Path

from glan_utils.core.errors import StoreError

# The run directory's layout (`outputs/<run>/`), named once; stage records are `<stage>.jsonl` (`runs/store.py`).
CONFIG = "config.yaml"  # the settings snapshot, no secrets
CONFIG_HISTORY = "config.history.jsonl"  # the snapshots config.yaml replaced, oldest first
REPLACED = "replaced"  # records moved aside by a replan, one folder per replan
MANIFEST = "manifest.json"  # stage status and counts
LEDGER = "ledger.jsonl"  # one line per model call
CODE_CHECKS = "code_checks.jsonl"  # the code verifier's verdicts, by pair id and program hash
DATASET = "dataset"  # the exported data set and its card
DATASET_REPORT = "report.json"  # in DATASET: what each data set step kept and removed
QA_TABLE = "qa.parquet"  # in DATASET: the kept pairs as one flat table
REPORT = "report.html"  # the one-page HTML report of `glan report`
CACHE = "cache.sqlite"  # the response cache, in the outputs folder (shared by runs)
NOTEBOOKS = "notebooks"  # executed notebooks of `glan run`
NOTEBOOK_SETTINGS = "settings.yaml"  # in NOTEBOOKS: the settings file the notebooks of `glan run` read
EVALUATION = "evaluation"
FINETUNE = "finetune"
BATCHES = "batches"  # Batch API files and state
PLOTS = "plots"
REVIEWS = "reviews"  # taxonomy review versions
PLAN = "plan.json"  # what the data set is built from: kept disciplines, planned subjects, taxonomy/review versions
TAXONOMY_CURRENT = "taxonomy_current.json"  # the taxonomy file's nodes, resolved to stored identities
TAXONOMY_SIZES = "taxonomy_sizes.json"  # the most children asked for per level, so a larger taxonomy.n_* grows


def cache_dir() -> Path:
    """The workbench's per-user cache (wheels, models, benchmark files, indexes); `GLAN_CACHE_DIR` overrides it."""
    return Path(os.environ.get("GLAN_CACHE_DIR") or Path.home() / ".cache" / "glan-workbench")


def replace_file(path: Path, text: str) -> None:
    """Replace a small file whole, atomically (a reader sees the old or the new one); a failed write (disk full,
    read-only file system) leaves no temporary file behind and is one StoreError."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None


def ensure_writable_dir(path: Path) -> Path:
    """Create `path` if needed; one clear StoreError when it cannot be created or written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create run directory {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise StoreError(f"run directory is not writable: {path}")
    return path
