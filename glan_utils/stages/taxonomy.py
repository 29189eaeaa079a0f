"""Paper §2.1: the taxonomy of knowledge, fields -> sub-fields -> disciplines, generated or user-given.

Generation makes one call per level per parent (fields; sub-fields of each field; disciplines of each
sub-field), so a killed run resumes per parent. A user file replaces generation: a nested mapping (YAML/JSON),
a list of `{name, parent}` edges (YAML/JSON), or a CSV with `field,subfield,discipline` or `name,parent`
columns. Every problem in a user file is one error naming its line.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from glan_utils.core.errors import InputError
from glan_utils.core.paths import TAXONOMY_CURRENT, TAXONOMY_SIZES
from glan_utils.core.records import LEVELS, Failure, NodeLevel, TaxonomyNode
from glan_utils.llm.prompts import RenderedPrompt, render
from glan_utils.runs.stage import StageSummary
from glan_utils.runs.store import RunStore
from glan_utils.settings import Settings
from glan_utils.stages.base import NAME_MAX, TEXT_MAX, Caller, Reply, bounded_list
from glan_utils.stages.bounds import budget
from glan_utils.stages.registry import Plan, Stage, StageReport, finish, open_store, run_pending
from glan_utils.stages.review import disciplines, repeated_disciplines
from glan_utils.stages.selection import kept_disciplines, read_json, write_json

NAME = "taxonomy"
NULL = "tag:yaml.org,2002:null"


class NodeProposal(BaseModel):
    """One taxonomy node proposed by the model."""

    name: str = Field(min_length=1, max_length=NAME_MAX)
    description: str = Field("", max_length=TEXT_MAX)


SIZE_KEYS: dict[NodeLevel, str] = {"field": "n_fields", "subfield": "n_subfields", "discipline": "n_disciplines"}


@dataclass(frozen=True)
class ExpandTask:
    """One call: propose the children (`level`) of `parent` (None: the top-level fields). A growth task (after
    `taxonomy.n_*` was raised) names the children the parent has (`known`) and asks for different ones."""

    parent: TaxonomyNode | None
    level: NodeLevel
    count: int
    known: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        base = f"{self.level}:{self.parent.id if self.parent else 'root'}"
        return f"{base}:to{self.count}" if self.known else base


def level_size(settings: Settings, level: NodeLevel) -> int:
    return getattr(settings.taxonomy, SIZE_KEYS[level])


def expand_task(
    parent: TaxonomyNode | None, level: NodeLevel, count: int, done: Container[str], have: list[str], asked: int | None
) -> ExpandTask:
    """The parent's expansion, or, once it is done and `count` is above what was `asked` before, its growth by the
    children it lacks (a parent that got fewer than asked at the same size is not asked again)."""
    base = ExpandTask(parent, level, count)
    grow = base.id in done and asked is not None and count > asked and len(have) < count
    return ExpandTask(parent, level, count, tuple(have)) if grow else base


def children_low(count: int) -> int:
    """Fewest children asked for: half the level's size, so a narrow area is not padded to a uniform count."""
    return max(1, (count + 1) // 2)


def expand_prompt(task: ExpandTask, language: str) -> RenderedPrompt:
    wanted = task.count - len(task.known)
    return render(
        "taxonomy",
        level=task.level,
        low=children_low(wanted),
        count=wanted,
        path=task.parent.path if task.parent else [],
        known=list(task.known),
        language=language,
    )


async def expand(
    caller: Caller, task: ExpandTask, settings: Settings, sample_index: int = 0
) -> list[TaxonomyNode] | Failure:
    """Ask for the children of one node (another `sample_index`: another sample of the same question)."""
    return await caller.generate(
        task.id,
        expand_prompt(task, settings.language),
        partial(_children, task),
        schema=bounded_list(NodeProposal, 1, task.count - len(task.known)),
        temperature=settings.taxonomy.temperature,
        sample_index=sample_index,
        **budget(settings, settings.taxonomy),
    )


def _children(task: ExpandTask, reply: Reply) -> list[TaxonomyNode]:
    """The reply as child nodes of the task's parent, duplicates within the reply dropped."""
    parent_path = task.parent.path if task.parent else []
    parents = [task.parent.id] if task.parent else []
    nodes: dict[str, TaxonomyNode] = {}
    known = {name.casefold() for name in task.known}
    for item in [i for i in reply.parsed.items if i.name.strip().casefold() not in known][: task.count - len(known)]:
        node = TaxonomyNode(
            name=item.name.strip(),
            level=task.level,
            parent_id=parents[0] if parents else None,
            path=[*parent_path, item.name.strip()],
            description=item.description,
            provenance=reply.provenance(parents),
        )
        nodes.setdefault(node.id, node)
    return list(nodes.values())


async def run(settings: Settings) -> StageReport:
    """Load the user's taxonomy file, or generate fields, sub-fields per field, disciplines per sub-field.

    The report (and the manifest) says which parents came back with fewer children than asked and which
    discipline names sit under two parents, so neither is silent."""
    previous = RunStore(settings.run_dir).read_config().get(NAME) or {}
    store = open_store(settings, NAME)
    tax = settings.taxonomy
    if tax.source:
        nodes = file_nodes(settings)
        write_json(settings.run_dir / TAXONOMY_CURRENT, [n.model_dump(mode="json") for n in nodes])
        added = store.append(NAME, nodes)
        summary = StageSummary(NAME, planned=len(nodes), skipped=len(nodes) - added, records=added)
        return finish(settings, StageReport(NAME, summary, extra={"source": tax.source}))
    report = StageReport(NAME, StageSummary(NAME))
    parents: list[TaxonomyNode | None] = [None]
    short: list[str] = []
    asked = read_json(settings.run_dir / TAXONOMY_SIZES) or {lvl: previous.get(key) for lvl, key in SIZE_KEYS.items()}
    done = store.done_task_ids(NAME)
    for level in LEVELS:
        count, have = level_size(settings, level), _child_names(store.iter_records(NAME), level)
        tasks = [expand_task(p, level, count, done, have.get(p.id if p else None, []), asked[level]) for p in parents]
        part = await run_pending(settings, NAME, NAME, lambda t=tasks: t, expand, total=len(tasks))
        report.absorb(part)
        asked[level] = max(count, asked[level] or 0)
        write_json(settings.run_dir / TAXONOMY_SIZES, asked)
        parent_ids = {p.id if p else None for p in parents}
        children = [n for n in store.iter_records(NAME) if n.level == level and n.parent_id in parent_ids]
        short += fewer_children(tasks, children)
        parents = list(children)
    repeated = repeated_disciplines(store.iter_records(NAME))
    report.extra = {
        "fewer_children": "; ".join(short) or "none",
        "repeated_disciplines": "; ".join(f"{name}: {' | '.join(paths)}" for name, paths in repeated.items()) or "none",
    }
    return finish(settings, report)


def _child_names(nodes: Iterable[TaxonomyNode], level: NodeLevel) -> dict[str | None, list[str]]:
    """The names of each parent's stored children of `level`."""
    names: dict[str | None, list[str]] = {}
    for node in nodes:
        if node.level == level:
            names.setdefault(node.parent_id, []).append(node.name)
    return names


def fewer_children(tasks: list[ExpandTask], children: list[TaxonomyNode]) -> list[str]:
    """'Mathematics: 1 of 2 subfields' for every parent that got fewer children than asked (failures included)."""
    got: dict[str | None, int] = {}
    for child in children:
        got[child.parent_id] = got.get(child.parent_id, 0) + 1
    lines = []
    for task in tasks:
        n = got.get(task.parent.id if task.parent else None, 0)
        if n < task.count:
            where = " > ".join(task.parent.path) if task.parent else "top level"
            lines.append(f"{where}: {n} of {task.count} {task.level}s")
    return lines


def file_nodes(settings: Settings) -> list[TaxonomyNode]:
    """The `taxonomy.source` file's nodes, each with the identity of the stored node it is (see `same_node`)."""
    tax = settings.taxonomy
    return resolve(load_taxonomy_file(tax.source, tax.max_name_chars), RunStore(settings.run_dir).iter_records(NAME))


def name_key(name: str) -> str:
    """A name with case, spacing and punctuation ignored: two names with the same key are one node's spellings."""
    return " ".join(re.sub(r"[\W_]+", " ", name.casefold()).split())


def resolve(nodes: list[TaxonomyNode], stored: Iterable[TaxonomyNode]) -> list[TaxonomyNode]:
    """File nodes (parents first) with stored identities: a rename or a move in the file keeps the node's id.

    What counts as the same node (`same_node`): the same path; else, for a stored node that left the file, a name
    that differs only in case, spacing or punctuation under the same parent (a typo fix: renamed), or the same
    such name anywhere at the same level when only one stored node has it (moved). Any other name is a new node
    (the old one is removed, the new one generated); to regenerate a node under a name kept as it is, review it
    with `regenerate`.
    """
    stored = list(stored)
    present, known = {n.id for n in nodes}, {n.id for n in stored}
    free = [n for n in stored if n.id not in present]
    ids: dict[str, str] = {}
    out: list[TaxonomyNode] = []
    for node in nodes:
        parent_id = ids.get(node.parent_id or "", node.parent_id)
        match = None if node.id in known else same_node(node, parent_id, free)
        if match is not None:
            free.remove(match)
        ids[node.id] = match.id if match else node.id
        out.append(node.model_copy(update={"id": ids[node.id], "parent_id": parent_id}))
    return out


def same_node(node: TaxonomyNode, parent_id: str | None, free: list[TaxonomyNode]) -> TaxonomyNode | None:
    """The stored node (not in the file any more) that `node` renames or moves, if any."""
    spelled = [s for s in free if s.level == node.level and name_key(s.name) == name_key(node.name)]
    here = [s for s in spelled if s.parent_id == parent_id]
    return here[0] if here else (spelled[0] if len(spelled) == 1 else None)


def plan(settings: Settings, inputs: int) -> Plan:
    """One call per parent per level; a user file makes no call and hands on its own disciplines."""
    tax = settings.taxonomy
    if tax.source:
        return Plan(0, len(disciplines(file_nodes(settings))))
    return Plan(1 + tax.n_fields + tax.n_fields * tax.n_subfields, tax.n_fields * tax.n_subfields * tax.n_disciplines)


def preview(settings: Settings) -> RenderedPrompt:
    return expand_prompt(ExpandTask(None, "field", settings.taxonomy.n_fields), settings.language)


# ----- user-supplied taxonomies -----


@dataclass
class _Entry:
    name: str
    parent: str | None
    line: int
    description: str = ""


def load_taxonomy_file(path: str | Path, max_name_chars: int = 200) -> list[TaxonomyNode]:
    """Read a user taxonomy (YAML, JSON or CSV) into validated nodes; raise InputError naming the bad line.

    Names are non-empty strings of at most `max_name_chars` (`taxonomy.max_name_chars`): a YAML `null` is not a
    discipline called "null", and a 10,000-character name would only be sent to the model."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"taxonomy file not found: {path}") from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}: line {line}: not UTF-8 text (bad byte at offset {exc.start})") from None
    entries = _csv_entries(text, path) if path.suffix.lower() == ".csv" else _yaml_entries(text, path)
    return _build(entries, path, max_name_chars)


def _csv_entries(text: str, path: Path) -> list[_Entry]:
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    reader.fieldnames = columns
    if set(LEVELS) <= set(columns):  # path form: one row per discipline, fields repeat on every row
        return _path_rows(reader)
    if {"name", "parent"} <= set(columns):
        return [
            _Entry(
                (row["name"] or "").strip(),
                (row["parent"] or "").strip() or None,
                reader.line_num,
                (row.get("description") or "").strip(),
            )
            for row in reader
        ]
    raise InputError(f"{path}: line 1: CSV needs columns field,subfield,discipline or name,parent")


def _path_rows(reader: csv.DictReader) -> list[_Entry]:
    """Entries from `field,subfield,discipline` rows; a field or sub-field is taken from its first row."""
    seen: set[tuple[str, ...]] = set()
    entries: list[_Entry] = []
    for row in reader:
        names = [(row.get(level) or "").strip() for level in LEVELS]
        for depth, name in enumerate(names):
            if not name and not any(names[depth + 1 :]):
                break
            key = tuple(names[: depth + 1])
            if key not in seen or depth == len(LEVELS) - 1:  # a repeated discipline is a duplicate
                entries.append(_Entry(name, names[depth - 1] if depth else None, reader.line_num))
            seen.add(key)
    return entries


def _yaml_entries(text: str, path: Path) -> list[_Entry]:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(f"{path}: line {mark.line + 1 if mark else '?'}: not valid YAML/JSON") from None
    if isinstance(root, yaml.SequenceNode):
        return [_edge(item, path) for item in root.value]
    if isinstance(root, yaml.MappingNode):
        return list(_nested(root, None, 0, path))
    raise InputError(f"{path}: line 1: expected a mapping of fields or a list of {{name, parent}} entries")


def _scalar(node: yaml.Node, path: Path) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise InputError(f"{path}: line {node.start_mark.line + 1}: expected a name, found a nested structure")
    if node.tag == NULL:
        raise InputError(f"{path}: line {node.start_mark.line + 1}: expected a name, found null")
    return str(node.value).strip()


def _description(node: yaml.Node, path: Path) -> str:
    return "" if node.tag == NULL else _scalar(node, path)


def _edge(item: yaml.Node, path: Path) -> _Entry:
    line = item.start_mark.line + 1
    if not isinstance(item, yaml.MappingNode):
        raise InputError(f"{path}: line {line}: each entry needs 'name' (and 'parent' unless it is a field)")
    fields = {_scalar(k, path): v for k, v in item.value}
    if "name" not in fields:
        raise InputError(f"{path}: line {line}: entry has no 'name'")
    parent = fields.get("parent")
    parent_name = _scalar(parent, path) if parent is not None and parent.tag != NULL else None
    description = _description(fields["description"], path) if "description" in fields else ""
    return _Entry(_scalar(fields["name"], path), parent_name or None, line, description)


def _nested(node: yaml.Node, parent: str | None, depth: int, path: Path) -> Iterator[_Entry]:
    """Walk `{field: {subfield: [discipline, ...]}}` (a mapping of disciplines to descriptions works too)."""
    if isinstance(node, yaml.ScalarNode) and node.tag == NULL:
        return
    if depth >= len(LEVELS):
        raise InputError(f"{path}: line {node.start_mark.line + 1}: deeper than field/subfield/discipline")
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield _Entry(_scalar(item, path), parent, item.start_mark.line + 1)
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = _scalar(key, path)
            if depth == len(LEVELS) - 1:  # disciplines may map to a description
                if not isinstance(value, yaml.ScalarNode):
                    raise InputError(f"{path}: line {value.start_mark.line + 1}: deeper than field/subfield/discipline")
                yield _Entry(name, parent, key.start_mark.line + 1, _description(value, path))
            else:
                yield _Entry(name, parent, key.start_mark.line + 1)
                yield from _nested(value, name, depth + 1, path)
    else:
        raise InputError(f"{path}: line {node.start_mark.line + 1}: expected names of {LEVELS[depth]}s")


def _build(entries: list[_Entry], path: Path, max_name_chars: int) -> list[TaxonomyNode]:
    """Check names, duplicates, parents, cycles and depth, then create nodes top-down."""
    by_name: dict[str, _Entry] = {}
    for entry in entries:
        if not entry.name:
            raise InputError(f"{path}: line {entry.line}: empty name")
        if len(entry.name) > max_name_chars:
            raise InputError(
                f"{path}: line {entry.line}: name of {len(entry.name):,} characters is longer than "
                f"taxonomy.max_name_chars ({max_name_chars})"
            )
        if entry.name.casefold() in by_name:  # names are unique, so a parent name is never ambiguous
            raise InputError(
                f"{path}: line {entry.line}: duplicate '{entry.name}' (first at line "
                f"{by_name[entry.name.casefold()].line})"
            )
        by_name.setdefault(entry.name.casefold(), entry)
    chains = [_ancestry(entry, by_name, path) for entry in entries]
    nodes: dict[tuple[str, ...], TaxonomyNode] = {}
    for chain in sorted(chains, key=len):  # parents before children, whatever the file's order
        entry = chain[0]
        if len(chain) > len(LEVELS):
            raise InputError(f"{path}: line {entry.line}: '{entry.name}' is deeper than field/subfield/discipline")
        names = tuple(e.name for e in reversed(chain))
        parent = nodes.get(names[:-1])
        nodes[names] = TaxonomyNode(
            name=entry.name,
            level=LEVELS[len(names) - 1],
            path=list(names),
            parent_id=parent.id if parent else None,
            description=entry.description,
            source="user",
        )
    return list(nodes.values())


def _ancestry(entry: _Entry, by_name: dict[str, _Entry], path: Path) -> list[_Entry]:
    chain, current = [entry], entry
    while current.parent is not None:
        parent = by_name.get(current.parent.casefold())
        if parent is None:
            raise InputError(f"{path}: line {current.line}: unknown parent '{current.parent}'")
        if parent in chain:
            raise InputError(f"{path}: line {entry.line}: cycle: " + " -> ".join(e.name for e in [*chain, parent]))
        chain.append(parent)
        current = parent
    return chain


STAGE = Stage(
    record=TaxonomyNode,
    run=run,
    plan=plan,
    preview=preview,
    count=lambda settings: len(kept_disciplines(settings)),
    notebook="01_taxonomy",
)
