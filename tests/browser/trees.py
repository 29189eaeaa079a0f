"""Taxonomies at the paper's size and beyond, for review tests and the review benchmark.

`paper_tree` is the project's paper taxonomy (`configs/taxonomy/paper.yaml`) when it exists, else the paper's
own discipline list (`/work/shared/glan_disciplines.txt`, Table 8) grouped in order into 8 fields of 4 sub-fields,
which gives the same shape: ~160 nodes, ~123 disciplines. `synthetic_tree` builds any size (10x9x10 = 1,000).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from glan_utils.core.records import TaxonomyNode
from glan_utils.stages.taxonomy import load_taxonomy_file

ROOT = Path(__file__).resolve().parents[2]
PAPER_YAML = ROOT / "configs" / "taxonomy" / "paper.yaml"
DISCIPLINES = Path("/work/shared/glan_disciplines.txt")


def _node(name: str, parent: TaxonomyNode | None, level: str, description: str = "") -> TaxonomyNode:
    path = [*(parent.path if parent else []), name]
    return TaxonomyNode(
        name=name, level=level, parent_id=parent.id if parent else None, path=path, description=description
    )


def grouped(names: list[str], fields: int, subfields: int) -> list[TaxonomyNode]:
    """`names` as disciplines spread in order over `fields` x `subfields` branches."""
    nodes: list[TaxonomyNode] = []
    per_branch = -(-len(names) // (fields * subfields))
    for f in range(fields):
        field = _node(f"Field {f + 1}", None, "field", f"branch {f + 1} of the tree")
        nodes.append(field)
        for s in range(subfields):
            sub = _node(f"Sub-field {f + 1}.{s + 1}", field, "subfield")
            start = (f * subfields + s) * per_branch
            chunk = names[start : start + per_branch]
            if chunk:
                nodes.append(sub)
                nodes += [_node(name, sub, "discipline", f"the study of {name.lower()}") for name in chunk]
    return nodes


def paper_tree() -> list[TaxonomyNode]:
    """The paper-sized taxonomy (see the module docstring)."""
    if PAPER_YAML.exists():
        return load_taxonomy_file(PAPER_YAML)
    lines = DISCIPLINES.read_text(encoding="utf-8").splitlines()
    return grouped([line.strip() for line in lines if line.strip() and not line.startswith("#")], 8, 4)


def synthetic_tree(fields: int = 10, subfields: int = 9, disciplines: int = 10) -> list[TaxonomyNode]:
    """fields + fields*subfields + fields*subfields*disciplines nodes (defaults: 1,000)."""
    names = [f"Discipline {i + 1}" for i in range(fields * subfields * disciplines)]
    return grouped(names, fields, subfields)


def write_yaml(nodes: list[TaxonomyNode], path: Path) -> Path:
    """`nodes` as a nested taxonomy file (`{field: {sub-field: {discipline: description}}}`)."""
    tree: dict = {}
    for node in nodes:
        branch = tree
        for name in node.path[:-1]:
            branch = branch.setdefault(name, {})
        branch[node.name] = node.description or None if node.level == "discipline" else branch.get(node.name, {})
    path.write_text(yaml.safe_dump(tree, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
