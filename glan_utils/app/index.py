"""The run index: where each named run lives, so `glan status R`, `report R` and `run R --resume` find it
wherever its settings file put `output_dir`, without repeating `--config`.

One small JSON file in the workbench cache (`<cache_dir>/runs.json`): run name -> run directory, the settings
file it was started with and when it was last started. It is a convenience only: a run directory is the truth,
so an entry whose directory is gone is ignored, and an index that cannot be read or written never stops a run.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from glan_utils.core.paths import cache_dir

INDEX_FILE = "runs.json"


def index_path() -> Path:
    return cache_dir() / INDEX_FILE


def _read() -> dict[str, Any]:
    try:
        data = json.loads(index_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember(name: str, run_dir: Path, config_path: Path | None) -> None:
    """Record (or refresh) where run `name` lives; written atomically, silently skipped when not writable."""
    runs = _read()
    runs[name] = {
        "run_dir": str(run_dir.resolve()),
        "config_path": str(config_path.resolve()) if config_path else None,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = index_path()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(runs, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def lookup(name: str) -> Path | None:
    """The directory of run `name` from the index, or None when it is not indexed or no longer exists."""
    entry = _read().get(name)
    run_dir = Path(entry["run_dir"]) if isinstance(entry, dict) and entry.get("run_dir") else None
    return run_dir if run_dir is not None and run_dir.is_dir() else None
