"""Where things live on disk: the per-user workbench cache and writable run directories."""

from __future__ import annotations

import os
from pathlib import Path

from glan_utils.core.errors import StoreError


def cache_dir() -> Path:
    """The workbench's per-user cache (wheels, models, benchmark files, indexes); `GLAN_CACHE_DIR` overrides it."""
    return Path(os.environ.get("GLAN_CACHE_DIR") or Path.home() / ".cache" / "glan-workbench")


def ensure_writable_dir(path: Path) -> Path:
    """Create `path` if needed; one clear StoreError when it cannot be created or written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create run directory {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise StoreError(f"run directory is not writable: {path}")
    return path
