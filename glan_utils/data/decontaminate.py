"""Decontamination: flag generated questions/answers sharing word n-grams (13 by default) with benchmarks.

Benchmark texts (questions and reference answers/solutions of GSM8K, MATH, HumanEval, MBPP, ARC, MMLU, IFEval,
every split shipped offline) are reduced to hashed n-grams: one sorted uint64 array, ~14 bytes per n-gram with
its source and item, cached on disk per benchmark split, keyed by n and the loader's source. Records stream in
chunks; a lookup is a binary search per n-gram, so memory does not grow with the number of records. Words are
normalised like GPT-3's and lm-eval's decontamination (lower case, punctuation removed).

Texts shorter than n words can never share an n-gram, yet 26-35% of ARC, MMLU and MBPP test questions have fewer
than 13 words. So items of `SHORT_MIN_WORDS`..n-1 words are matched by normalised containment instead
(`ShortIndex`): a record is flagged when its question or answer contains the item's whole question as
consecutive words AND, where the item has a short gold option or answer (under n words), that too; a longer gold
(MBPP's code) is left to the n-gram index, so the question alone decides. Multiple-choice options are indexed
like the questions. Only the splits the offline wheels ship can be checked (no training splits are among them).
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import tee
from pathlib import Path

import numpy as np

from glan_utils.core import paths
from glan_utils.core.parallel import chunks, ordered_map
from glan_utils.data.hashing import ngram_hashes, tokenize
from glan_utils.settings import DecontamSettings

BenchmarkText = tuple[str, int, str]
"""(source such as 'gsm8k:test', item position within the source, text)."""

INDEX_FORMAT = 2
"""Bump when tokenisation, hashing or the indexed texts change, so cached indexes are rebuilt."""

SHORT_MIN_WORDS = 6
"""Shorter questions ("Which gas do plants absorb?") are too generic to call a match contamination."""

ShortItem = tuple[str, int, str, str | None]
"""(source, item position, question, gold option or answer, if any) of a benchmark item."""


@dataclass
class ShortIndex:
    """Benchmark questions of SHORT_MIN_WORDS..ngram-1 words: the hash of each whole question, by length."""

    sources: list[str]
    by_length: dict[int, tuple[np.ndarray, np.ndarray]]  # words -> (sorted question hashes, row in `items`)
    items: list[tuple[int, int, np.ndarray]]  # (source position, item position, gold word hashes)

    @classmethod
    def from_items(cls, items: Iterable[ShortItem], sources: list[str], longest: int) -> ShortIndex:
        """Index the items whose question has SHORT_MIN_WORDS..`longest` normalised words (vectorised)."""
        position = {name: i for i, name in enumerate(sources)}
        kept = [entry for entry in items if entry[0] in position]
        q_tokens, q_doc = tokenize([question for _, _, question, _ in kept])
        g_tokens, g_doc = tokenize([gold or "" for *_, gold in kept])
        words = np.bincount(q_doc, minlength=len(kept))
        bounds = np.searchsorted(g_doc, np.arange(len(kept) + 1))
        short = np.flatnonzero((words >= SHORT_MIN_WORDS) & (words <= longest))
        row_of = np.full(len(kept), -1, np.int64)
        row_of[short] = np.arange(len(short))
        golds = [g_tokens[bounds[i] : bounds[i + 1]] for i in range(len(kept))]
        # a gold of n words or more (MBPP's code, GSM8K's solution) is matched by the n-gram index itself
        golds = [gold if len(gold) <= longest else gold[:0] for gold in golds]
        rows = [(position[kept[i][0]], kept[i][1], golds[i]) for i in short.tolist()]
        by_length = {}
        for length in np.unique(words[short]).tolist():
            grams, gram_doc = ngram_hashes(q_tokens, q_doc, length)
            whole = words[gram_doc] == length  # the one gram that spans a question of exactly this length
            order = np.argsort(grams[whole], kind="stable")
            by_length[length] = (grams[whole][order], row_of[gram_doc[whole]][order])
        return cls(sources, by_length, rows)

    def __len__(self) -> int:
        return len(self.items)

    def matches(self, tokens: np.ndarray, doc: np.ndarray, n_records: int) -> np.ndarray:
        """Rows (doc, source, question hash, item) where a doc holds a short question and its record the gold.

        Docs 0..n_records-1 are questions and n_records.. the answers of the same records."""
        out = []
        for length, (hashes, rows) in self.by_length.items():
            grams, gram_doc = ngram_hashes(tokens, doc, length)
            left = np.searchsorted(hashes, grams, "left")
            hit = (left < len(hashes)) & (hashes[np.minimum(left, len(hashes) - 1)] == grams)
            for at, where in zip(left[hit].tolist(), gram_doc[hit].tolist(), strict=True):
                source, item, gold = self.items[int(rows[at])]
                record = where % n_records
                texts = [tokens[doc == record], tokens[doc == record + n_records]]
                if len(gold) == 0 or any(_contains(t, gold) for t in texts):
                    out.append((where, source, int(hashes[at]), item))
        return np.array(out, dtype=np.uint64).reshape(-1, 4)


def _contains(words: np.ndarray, part: np.ndarray) -> bool:
    """Whether `part` occurs in `words` as consecutive words."""
    n = len(part)
    starts = np.flatnonzero(words[: len(words) - n + 1] == part[0]) if n and len(words) >= n else []
    return any(np.array_equal(words[i : i + n], part) for i in starts)


@dataclass
class BenchmarkIndex:
    """Hashed n-grams of benchmark texts, sorted, with the source and item each came from."""

    ngram: int
    sources: list[str]
    hashes: np.ndarray
    source: np.ndarray
    item: np.ndarray
    short: ShortIndex | None = None

    @classmethod
    def from_parts(cls, parts: dict[str, tuple[np.ndarray, np.ndarray]], n: int) -> BenchmarkIndex:
        """Merge per-source (hashes, items) arrays into one index sorted by hash."""
        sources = sorted(parts)
        hashes = np.concatenate([parts[s][0] for s in sources] or [np.empty(0, np.uint64)])
        items = np.concatenate([parts[s][1] for s in sources] or [np.empty(0, np.uint32)])
        source = np.repeat(np.arange(len(sources), dtype=np.uint16), [len(parts[s][0]) for s in sources])
        order = np.argsort(hashes, kind="stable")
        return cls(n, sources, hashes[order], source[order], items[order])

    @classmethod
    def from_texts(cls, texts: Iterable[BenchmarkText], n: int, chunk_size: int = 4096) -> BenchmarkIndex:
        """Index any texts, e.g. planted ones in tests: (source, item, text) triples."""
        return cls.from_parts(hash_sources(texts, n, chunk_size), n)

    def __len__(self) -> int:
        return len(self.hashes)

    def __post_init__(self) -> None:
        # A bitset over the top hash bits (~32 bits per n-gram, ~3% false positives) answers most lookups from
        # cache-sized memory; only the few candidates pay for a binary search in the full sorted array.
        self._shift = np.uint64(64 - int(np.clip(np.ceil(np.log2(max(len(self.hashes), 1) * 32)), 10, 34)))
        self._bits = np.zeros((1 << (64 - int(self._shift))) // 8, np.uint8)
        if len(self.hashes):
            np.bitwise_or.at(self._bits, *self._bit_of(self.hashes))

    def _bit_of(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        slot = values >> self._shift
        return slot >> np.uint64(3), (np.uint8(1) << (slot & np.uint64(7)).astype(np.uint8))

    def lookup(self, grams: np.ndarray, doc: np.ndarray) -> tuple[np.ndarray, ...]:
        """Every (doc, source, item, gram) where a gram of a doc occurs in the index."""
        byte, mask = self._bit_of(grams)
        maybe = (self._bits[byte] & mask) != 0
        grams, doc = grams[maybe], doc[maybe]
        left = np.searchsorted(self.hashes, grams, "left")
        right = np.searchsorted(self.hashes, grams, "right")
        hit = right > left
        count = (right - left)[hit]
        rows = np.repeat(left[hit], count) + np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        return (np.repeat(doc[hit], count), self.source[rows], self.item[rows], np.repeat(grams[hit], count))


def hash_sources(
    texts: Iterable[BenchmarkText], n: int, chunk_size: int = 4096
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per source: its unique n-gram hashes and, for each, the first item it occurs in."""
    found: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for chunk in chunks(texts, chunk_size):
        grams, doc = ngram_hashes(*tokenize([t for _, _, t in chunk]), n)
        items = np.array([i for _, i, _ in chunk], np.uint32)
        names = np.array([s for s, _, _ in chunk], dtype=object)
        for name in dict.fromkeys(names):
            mask = names[doc] == name
            found.setdefault(name, []).append((grams[mask], items[doc[mask]]))
    out = {}
    for name, pieces in found.items():
        hashes, first = np.unique(np.concatenate([p[0] for p in pieces]), return_index=True)
        out[name] = (hashes, np.concatenate([p[1] for p in pieces])[first])
    return out


def benchmark_texts(name: str, split: str) -> Iterator[BenchmarkText]:
    """Question, reference and option texts of one benchmark split (MATH also its worked solution)."""
    from glan_utils.data import benchmarks

    source = f"{name}:{split}"
    for position, item in enumerate(benchmarks.iter_items(name, split)):
        yield source, position, item.text
        for extra in dict.fromkeys((item.answer, item.extra.get("solution"), *(item.choices or []))):
            if isinstance(extra, str) and extra:
                yield source, position, extra


def short_items(name: str, split: str) -> Iterator[ShortItem]:
    """Every item of a split as (source, position, question, gold); ShortIndex keeps the short ones."""
    from glan_utils.data import benchmarks

    for position, item in enumerate(benchmarks.iter_items(name, split)):
        yield f"{name}:{split}", position, item.text, item.answer


def _cache_root(settings: DecontamSettings) -> Path:

    return Path(settings.cache_dir) if settings.cache_dir else paths.cache_dir() / "decontam"


def load_index(settings: DecontamSettings) -> BenchmarkIndex:
    """The index of the configured benchmarks and splits, built once per (n, split, loader version)."""
    from glan_utils.data import benchmarks

    loader = hashlib.sha256(inspect.getsource(benchmarks).encode()).hexdigest()[:12]
    root = _cache_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    parts, chosen = {}, []
    for name in settings.benchmarks or benchmarks.BENCHMARKS:
        for split in settings.splits or benchmarks.splits(name):
            if split not in benchmarks.splits(name):
                continue
            chosen.append((name, split))
            path = root / f"{name}-{split}-n{settings.ngram}-v{INDEX_FORMAT}-{loader}.npz"
            if not path.exists():
                built = hash_sources(benchmark_texts(name, split), settings.ngram).get(f"{name}:{split}")
                empty = (np.empty(0, np.uint64), np.empty(0, np.uint32))
                hashes, items = built or empty
                tmp = path.with_suffix(".tmp.npz")
                np.savez(tmp, hashes=hashes, items=items)
                tmp.replace(path)
            data = np.load(path)
            parts[f"{name}:{split}"] = (data["hashes"], data["items"])
    index = BenchmarkIndex.from_parts(parts, settings.ngram)
    items = (entry for name, split in chosen for entry in short_items(name, split))
    index.short = ShortIndex.from_items(items, index.sources, settings.ngram - 1)
    return index


def item_text(texts: Iterable[BenchmarkText], source: str, item: int) -> str:
    """The first text of one benchmark item (its question), for showing an example."""
    return next((t for s, i, t in texts if s == source and i == item), "")


@dataclass
class Example:
    """One flagged record: where it matched and how strongly."""

    record: int
    source: str
    item: int
    matches: int
    where: str
    text: str


@dataclass
class DecontamResult:
    """Sparse matches (record, source, shared n-grams) plus a few examples per benchmark."""

    n_records: int
    sources: list[str]
    record: np.ndarray
    source: np.ndarray
    matches: np.ndarray
    examples: list[Example] = field(default_factory=list)

    def contaminated(self, min_matches: int) -> np.ndarray:
        """Bool per record: shares at least `min_matches` n-grams with one benchmark source."""
        mask = np.zeros(self.n_records, bool)
        mask[self.record[self.matches >= min_matches]] = True
        return mask

    def per_benchmark(self, min_matches: int, alive: np.ndarray) -> dict[str, dict[str, int]]:
        """Per benchmark name: records flagged (any shared n-gram) and removed (alive and >= min_matches)."""
        names = np.array([s.split(":")[0] for s in self.sources] or [""], dtype=object)[self.source]
        out = {}
        for name in dict.fromkeys(names):
            mine = names == name
            strong = mine & (self.matches >= min_matches)
            out[name] = {
                "flagged": len(np.unique(self.record[mine])),
                "removed": len(np.unique(self.record[strong][alive[self.record[strong]]])),
            }
        return out


_WORKER_INDEX: BenchmarkIndex | None = None


def _set_index(index: BenchmarkIndex) -> None:
    global _WORKER_INDEX
    _WORKER_INDEX = index


def _match_chunk(chunk: list[tuple[str, str]]) -> np.ndarray:
    """Rows (record, source, gram, doc, item) of each distinct match in a chunk (docs: questions, answers)."""
    assert _WORKER_INDEX is not None
    texts = [q for q, _ in chunk] + [a for _, a in chunk]
    tokens, token_doc = tokenize(texts)
    grams, doc = ngram_hashes(tokens, token_doc, _WORKER_INDEX.ngram)
    hit_doc, hit_source, hit_item, hit_gram = _WORKER_INDEX.lookup(grams, doc)
    if _WORKER_INDEX.short is not None:  # short items: whole-question containment (+ gold), one match each
        short = _WORKER_INDEX.short.matches(tokens, token_doc, len(chunk))
        hit_doc, hit_source, hit_gram, hit_item = (
            np.concatenate([mine, short[:, k].astype(mine.dtype)])
            for k, mine in enumerate((hit_doc, hit_source, hit_gram, hit_item))
        )
    columns = [hit_doc % len(chunk), hit_source, hit_gram.view(np.int64), hit_doc, hit_item]
    return np.unique(np.stack([c.astype(np.int64) for c in columns], axis=1), axis=0)


def scan(records: Iterable[tuple[str, str]], index: BenchmarkIndex, settings: DecontamSettings) -> DecontamResult:
    """Stream (question, answer) pairs and record which share n-grams with which benchmark source."""
    found: list[np.ndarray] = []
    examples: dict[str, list[Example]] = {}
    total = 0
    batches, again = tee(chunks(records, settings.chunk_size))
    for chunk, table in zip(
        again,
        ordered_map(_match_chunk, batches, settings.workers or os.cpu_count() or 1, _set_index, (index,)),
        strict=True,
    ):
        distinct = np.unique(table[:, :3], axis=0)
        rec_src, counts = np.unique(distinct[:, :2], axis=0, return_counts=True)
        found.append(np.column_stack([rec_src[:, 0] + total, rec_src[:, 1], counts]).astype(np.int64))
        _collect_examples(examples, table, chunk, total, index.sources, settings.examples)
        total += len(chunk)
    hits = np.concatenate(found) if found else np.empty((0, 3), np.int64)
    return DecontamResult(
        total,
        index.sources,
        hits[:, 0],
        hits[:, 1].astype(np.int32),
        hits[:, 2],
        [e for group in examples.values() for e in group],
    )


def _collect_examples(
    examples: dict[str, list[Example]],
    table: np.ndarray,
    chunk: list[tuple[str, str]],
    offset: int,
    sources: list[str],
    limit: int,
) -> None:
    """Keep the first `limit` flagged records per benchmark, with the text that matched."""
    for rec, src in dict.fromkeys(map(tuple, table[:, :2].tolist())):
        name = sources[src].split(":")[0]
        kept = examples.setdefault(name, [])
        if len(kept) >= limit or any(e.record == offset + rec for e in kept):
            continue
        rows = table[(table[:, 0] == rec) & (table[:, 1] == src)]
        in_answer = bool(rows[0, 3] >= len(chunk))
        kept.append(
            Example(
                offset + rec,
                sources[src],
                int(rows[0, 4]),
                len(np.unique(rows[:, 2])),
                "answer" if in_answer else "question",
                chunk[rec][1 if in_answer else 0],
            )
        )


def planted_texts(pairs: Iterable[tuple[str, str]]) -> Callable[[], Iterator[BenchmarkText]]:
    """Turn (benchmark name, text) pairs into a re-iterable source of `BenchmarkText`, e.g. for tests."""
    frozen = list(pairs)

    def texts() -> Iterator[BenchmarkText]:
        positions: dict[str, int] = {}
        for name, text in frozen:
            source = name if ":" in name else f"{name}:test"
            positions[source] = positions.get(source, -1) + 1
            yield source, positions[source], text

    return texts
