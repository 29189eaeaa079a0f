"""Which finished stages are stale: their inputs changed after they ran (a review saved, an earlier stage rerun or
replanned). They stay stale until they run again.

Only the manifest and file times are read, and nothing above `core` is imported, so `glan status` stays quick at
any run size and every notebook's settings cell can say which stages are stale: each generation stage's manifest
entry names its notebook, the stage whose records it reads (`needs`) and its sub-stages (`parts`), as
`stages.pipeline.run` records them; notebooks are ordered by their number.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from glan_utils.core.paths import MANIFEST, REVIEWS

DONE = ("complete", "complete_with_failures")
REVIEW = "review"


def _mtime(paths: Iterable[Path]) -> float:
    return max((p.stat().st_mtime for p in paths if p.is_file()), default=0.0)


def _started(entries: Iterable[dict[str, Any]]) -> float | None:
    times = [datetime.fromisoformat(str(e["started_at"])).timestamp() for e in entries if e.get("started_at")]
    return min(times, default=None)


def stale_stages(run_dir: str | Path) -> dict[str, str]:
    """Stages and notebooks marked complete whose inputs changed after they started: name -> what changed."""
    run_dir = Path(run_dir)
    path = run_dir / MANIFEST
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")).get("stages", {}) if path.exists() else {}
    wired = {name: info for name, info in manifest.items() if "needs" in info}

    def files(name: str) -> list[str]:
        return [*wired.get(name, {}).get("parts", []), name]

    changed = {name: _mtime(run_dir / f"{part}.jsonl" for part in files(name)) for name in wired}
    changed[REVIEW] = _mtime((run_dir / REVIEWS).glob("*"))
    roots = {wired[name]["notebook"] for name in wired if not wired[name]["needs"]}
    stale = {}
    for name, info in manifest.items():
        if info.get("status") not in DONE:
            continue
        if name in wired:
            since = _started(manifest.get(part, {}) for part in files(name))
            upstream, needs = [], info["needs"]
            while needs:
                upstream.append(needs)
                needs = wired.get(needs, {}).get("needs")
            upstream += [REVIEW] if upstream else []
        elif info.get("kind") == "notebook":
            since = _started([info])
            upstream = [stage for stage in wired if wired[stage]["notebook"] < name]
            upstream += [REVIEW] if any(root < name for root in roots) else []
        else:
            continue
        if since is not None and (why := [what for what in upstream if changed.get(what, 0.0) > since]):
            stale[name] = f"{', '.join(why)} changed since it ran"
    return stale
