"""The package's shape: layers import only downward, no cycles, wing faces and docs/architecture.md match the code,
and package data travels with a built wheel."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "glan_utils"
LAYERS = ["core", "settings", "llm", "runs", "stages", "data", "train", "evaluation", "views", "app", "testing"]
RANK = {name: i for i, name in enumerate(LAYERS)}
# train and evaluation sit side by side; testing (the loopback server) may use anything below it.
PEERS = {frozenset({"train", "evaluation"})}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("glan_utils"):
            found += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("glan_utils")]
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def test_layers_import_only_downward() -> None:
    upward = []
    for path in PACKAGE.rglob("*.py"):
        here = _layer("glan_utils." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        if here is None:
            continue
        for target in _imports(path):
            there = _layer(target)
            if there and RANK[there] > RANK[here] and frozenset({here, there}) not in PEERS:
                upward.append(f"{path.relative_to(PACKAGE)} -> {target}")
    assert not upward, "upward imports:\n" + "\n".join(sorted(set(upward)))


def test_package_top_holds_only_the_face() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py"], top


def test_no_import_cycle_between_modules() -> None:
    modules = {
        "glan_utils." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__"): p
        for p in PACKAGE.rglob("*.py")
    }
    graph = {
        name: {t if t in modules else t.rsplit(".", 1)[0] for t in _imports(path)} & set(modules) - {name}
        for name, path in modules.items()
    }
    # a package's __init__ re-exporting its own modules is not a cycle through them
    for name in graph:
        graph[name] = {t for t in graph[name] if not (name.startswith(t + ".") or t.startswith(name + "."))}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*trail[trail.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_wheel_packages_are_the_package_folders_and_the_top_level_prompts() -> None:
    """pyproject lists the packages (so `prompts/` can map in); the list is every folder of `glan_utils`, no more."""
    setuptools = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    folders = {
        ".".join(("glan_utils", *path.relative_to(PACKAGE).parts))
        for path in [PACKAGE, *PACKAGE.rglob("*")]
        if path.is_dir() and path.name != "__pycache__" and not path.name.startswith(".")
    }
    assert setuptools["package-dir"] == {"glan_utils.prompts": "prompts"}
    assert sorted(setuptools["packages"]) == sorted(folders | {"glan_utils.prompts"})
    assert sorted(p.name for p in (PACKAGE.parent / "prompts").glob("*.jinja")), "no templates in prompts/"
    assert not (PACKAGE / "prompts").exists(), "the templates live in the top-level prompts/, not in the package"


@pytest.mark.slow
def test_built_wheel_renders_every_prompt(tmp_path: Path) -> None:
    """A non-editable install into a fresh venv carries the prompts and lm-eval task YAMLs."""
    root = PACKAGE.parent
    wheel_dir = tmp_path / "wheel"
    # the wheel alone: a checkout on PYTHONPATH (and the egg-info the build leaves in it) would shadow it
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(root),
        ],
        check=True,
        cwd=tmp_path,
        env=env,
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    python = venv / "bin" / "python"
    # the dependencies come from this environment, after the new venv's own site-packages (and no editable finder)
    own = subprocess.run(
        [str(python), "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    Path(own, "deps.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")
    wheel = next(wheel_dir.glob("*.whl"))
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, env=env
    )
    probe = (
        "import glan_utils, pathlib, sys\n"
        "from glan_utils.llm.prompts import PROMPTS_DIR\n"
        "from glan_utils.evaluation.harness import TEMPLATES\n"
        "assert 'site-packages' in glan_utils.__file__, glan_utils.__file__\n"
        "names = sorted(p.stem for p in PROMPTS_DIR.glob('*.jinja'))\n"
        "assert {'taxonomy', 'subjects', 'syllabi', 'questions', 'answers'} <= set(names), names\n"
        "assert sorted(p.stem for p in TEMPLATES.glob('*.yaml')), TEMPLATES\n"
        "from glan_utils.settings import load_settings\n"
        "from glan_utils.stages.estimates import preview_prompt\n"
        "from glan_utils.stages import STAGES\n"
        "s = load_settings(None, {'output_dir': sys.argv[1]}, environ={})\n"
        "for stage in STAGES: assert preview_prompt(s, stage).messages[-1]['content'], stage\n"
        "print(len(names))\n"
    )
    out = subprocess.run(
        [str(python), "-c", probe, str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]


def _architecture_tree() -> dict[str, set[str]]:
    """docs/architecture.md's package tree: each wing's listed modules, their parenthesised notes dropped."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    tree = text.split("```\nglan_utils/", 1)[1].split("```", 1)[0]
    wings: dict[str, str] = {}
    wing = ""
    for line in tree.splitlines()[1:]:
        head = re.match(r"  (\w+)/\s+", line)
        if head:
            wing = head.group(1)
            line = line[head.end() :]
        wings[wing] = wings.get(wing, "") + " " + line.strip()
    listed = {}
    for name, text in wings.items():
        while re.search(r"\([^()]*\)", text):
            text = re.sub(r"\([^()]*\)", "", text)
        listed[name] = {item.strip() for item in re.split(r"[,;]", text) if item.strip()}
    return listed


def test_architecture_doc_lists_every_module_of_every_wing() -> None:
    expected = {
        wing.name: {p.stem for p in wing.glob("*.py") if p.name != "__init__.py"}
        | {f"{p.name}/" for p in wing.iterdir() if p.is_dir() and p.name != "__pycache__"}
        for wing in PACKAGE.iterdir()
        if (wing / "__init__.py").exists()
    }
    assert _architecture_tree() == expected


@pytest.mark.parametrize("wing", LAYERS)
def test_wing_face_says_what_it_may_import(wing: str) -> None:
    """Each wing's `__init__` docstring ends its account with `May import:` and exactly the layers below it."""
    doc = ast.get_docstring(ast.parse((PACKAGE / wing / "__init__.py").read_text(encoding="utf-8"))) or ""
    line = next((line for line in doc.splitlines() if line.startswith("May import:")), "")
    allowed = {w for w in LAYERS if RANK[w] < RANK[wing] or frozenset({w, wing}) in PEERS}
    assert line, f"{wing}/__init__.py does not say what it may import"
    assert set(re.findall(r"`(\w+)`", line)) == allowed, line
    assert len(doc.split("\n\n", 1)[0]) > 40, f"{wing}/__init__.py does not say what the wing holds"
