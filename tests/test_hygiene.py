"""Tracked notebooks carry no outputs; the clean filter keeps them out of git; `glan run` names edited notebooks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from glan_utils.app.hygiene import dumps, edited_notebooks, strip_outputs

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_tracked_notebooks_carry_no_outputs(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert dumps(strip_outputs(json.loads(text))) == text, f"{path.name} holds outputs: strip them before committing"


def test_the_gitattributes_name_the_clean_filter() -> None:
    assert "notebooks/*.ipynb filter=glan-notebook" in (ROOT / ".gitattributes").read_text()
    assert "filter.glan-notebook.clean" in (ROOT / "Makefile").read_text()  # installed by `make setup`


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding notebook 02, with the filter configured as `make setup` does."""
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@example.org")
    git(tmp_path, "config", "user.name", "t")
    git(tmp_path, "config", "filter.glan-notebook.clean", f"{sys.executable} -m glan_utils.app.hygiene")
    shutil.copy(ROOT / ".gitattributes", tmp_path / ".gitattributes")
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "02_subjects.ipynb", tmp_path / "notebooks" / "02_subjects.ipynb")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "notebooks")
    return tmp_path


def test_outputs_saved_by_jupyter_stay_out_of_git_and_are_no_edit(repo: Path) -> None:
    path = repo / "notebooks" / "02_subjects.ipynb"
    nb = nbformat.read(path, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", text="a long autosaved output\n")]
    code.execution_count = 7
    nbformat.write(nb, path)
    assert edited_notebooks(repo / "notebooks") == []  # outputs only: not an edit
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", "after a session")
    stored = json.loads(git(repo, "show", "HEAD:notebooks/02_subjects.ipynb"))
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in stored["cells"])
    assert "a long autosaved output" in path.read_text()  # the file on disk keeps what Jupyter saved


def test_an_edited_cell_is_reported(repo: Path) -> None:
    path = repo / "notebooks" / "02_subjects.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("print('my experiment')"))
    nbformat.write(nb, path)
    assert edited_notebooks(repo / "notebooks") == ["02_subjects.ipynb"]
    assert edited_notebooks(repo.parent) == []  # not a git checkout: nothing to compare with
