"""Two tiny numbered notebooks for runner/CLI tests: one with an `overrides` parameter, one without."""

from __future__ import annotations

from pathlib import Path

import nbformat

_LOAD = (
    "from pathlib import Path\nfrom glan_utils.settings import load_settings\n"
    "settings = load_settings(config_path, {'run_name': run_name, 'output_dir': output_dir, **extra})\n"
)


def _notebook(params: str, body: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# intro"), cell, nbformat.v4.new_code_cell(body)]
    return nb


def write_notebooks(folder: Path) -> Path:
    """`01_alpha` logs `n` and the seed (settings via `overrides`); `02_beta` logs the seed or raises."""
    folder.mkdir(parents=True, exist_ok=True)
    common = 'run_name = "demo"\noutput_dir = "outputs"\nconfig_path = None  # note: a comment with = in it\n'
    log = "with open(settings.run_dir / '{}.log', 'a') as f:\n    f.write(f'{}\\n')"
    alpha = _notebook(
        common + "overrides = {}\nn = 1\n", "extra = overrides\n" + _LOAD + log.format("alpha", "{n} {settings.seed}")
    )
    beta = _notebook(
        common + "fail = False\n",
        "extra = {}\n" + _LOAD + "assert not fail, 'beta was told to fail'\n" + log.format("beta", "{settings.seed}"),
    )
    nbformat.write(alpha, folder / "01_alpha.ipynb")
    nbformat.write(beta, folder / "02_beta.ipynb")
    (folder / "README.ipynb").write_text("{}")  # not numbered: ignored
    return folder
