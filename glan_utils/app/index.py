"""The run index: where each named run lives, so `glan status R`, `report R` and `run R --resume` find it
wherever its settings file put `output_dir`, without repeating `--config`.

One small JSON file in the workbench cache (`<cache_dir>/runs.json`), keyed by checkout and run name: the run
directory, the settings file it was started with and when it was last started. Two clones each have their own
`demo`; a command run outside any checkout finds a run by name only when one checkout has it. It is a
convenience only: a run directory is the truth (the CLI looks in `outputs/<run>` here first), an entry whose
directory is gone is ignored, and an index that cannot be read or written never stops a run.
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


def repository(start: Path | None = None) -> Path | None:
    """The checkout a command runs in: the nearest folder up from `start` (default: here) holding `.git`."""
    here = (start or Path.cwd()).resolve()
    return next((folder for folder in (here, *here.parents) if (folder / ".git").exists()), None)


def _key(name: str, repo: Path | None) -> str:
    return f"{repo}::{name}" if repo else name


def remember(name: str, run_dir: Path, config_path: Path | None) -> None:
    """Record (or refresh) where run `name` of this checkout lives; written atomically, skipped when not writable."""
    runs, repo = _read(), repository()
    runs[_key(name, repo)] = {
        "name": name,
        "repository": str(repo) if repo else None,
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
    """The directory of run `name` of this checkout from the index (outside any checkout: of the one checkout that
    has such a run), or None when it is not indexed or no longer exists."""
    runs, repo = _read(), repository()
    entry = runs.get(_key(name, repo))
    if entry is None and repo is None:
        named = [e for key, e in runs.items() if isinstance(e, dict) and e.get("name", key) == name]
        entry = named[0] if len(named) == 1 else None
    run_dir = Path(entry["run_dir"]) if isinstance(entry, dict) and entry.get("run_dir") else None
    return run_dir if run_dir is not None and run_dir.is_dir() else None
