"""Tracked notebooks stay as committed: no outputs in git, and a batch run says when `notebooks/` was edited.

JupyterLab autosaves outputs and edited cells into the notebooks it opens. Outputs are kept out of git by a clean
filter (`python -m glan_utils.app.hygiene`, installed by `make setup` for `notebooks/*.ipynb` in .gitattributes):
git stores the notebook stripped, the file on disk keeps its outputs. Edits to parameters cells never reach a batch
run (`glan run` passes every declared parameter); any other edit does, so `glan run` warns with the edited names.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

# Cell metadata that only records one execution (timings, papermill's per-cell status, collapsed views).
RUN_METADATA = ("execution", "papermill", "collapsed", "scrolled")


def strip_outputs(notebook: dict[str, Any]) -> dict[str, Any]:
    """The notebook without outputs, execution counts, widget state and per-run metadata (new dict)."""
    clean = dict(notebook)
    if "metadata" in clean:
        clean["metadata"] = {k: v for k, v in clean["metadata"].items() if k != "widgets"}
    cells = []
    for cell in notebook.get("cells", []):
        cell = {**cell, "metadata": {k: v for k, v in cell.get("metadata", {}).items() if k not in RUN_METADATA}}
        if cell.get("cell_type") == "code":
            cell |= {"outputs": [], "execution_count": None}
        cells.append(cell)
    return {**clean, "cells": cells}


def dumps(notebook: dict[str, Any]) -> str:
    """nbformat's own layout (one-space indent, UTF-8, trailing newline), so a clean notebook is byte-identical."""
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def _git(folder: Path, *args: str) -> str | None:
    """A git command's output in `folder`, None outside a checkout or when git fails."""
    try:
        done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _cells(notebook: dict[str, Any]) -> list[tuple[str, str]]:
    """What a run executes and shows: each cell's type and source (outputs, ids and metadata aside)."""
    cells = notebook.get("cells", [])
    return [(str(c.get("cell_type")), "".join(c.get("source", ""))) for c in cells]


def edited_notebooks(folder: Path) -> list[str]:
    """The committed notebooks in `folder` whose cells differ from the commit (outputs and the layout JupyterLab
    saves in aside); [] outside a git checkout."""
    edited = []
    for name in (_git(folder, "ls-files", "--", "*.ipynb") or "").splitlines():
        committed = _git(folder, "show", f"HEAD:./{name}")
        try:
            local = json.loads((folder / name).read_text(encoding="utf-8"))
            same = committed is not None and _cells(json.loads(committed)) == _cells(local)
        except (OSError, ValueError):
            same = False
        if "/" not in name and not same:
            edited.append(name)
    return sorted(edited)


def main() -> None:
    """The git clean filter: a notebook on stdin, the same notebook without outputs on stdout."""
    text = sys.stdin.read()
    try:
        notebook = json.loads(text)
    except ValueError:
        sys.stdout.write(text)  # not JSON (a merge in progress): store it as it is
        return
    sys.stdout.write(dumps(strip_outputs(notebook)))


if __name__ == "__main__":
    main()
