"""Vectorised text hashing shared by dedup, decontamination and export: word tokens, n-grams, sequences.

Words are hashed once per chunk's vocabulary with pyarrow and combined with numpy, so hashing costs a few
microseconds per text and the same text always gets the same hashes across processes and runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_NON_WORD = r"[^\p{L}\p{N}]"
GRAM_MULT = np.uint64(0x9E3779B97F4A7C15)


def mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: spreads structured 64-bit values (e.g. polynomial hashes) over all bits."""
    x = values ^ (values >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def string_hashes(strings: pa.Array) -> np.ndarray:
    """Stable 64-bit hash per string (pandas' keyed SipHash: identical across processes and runs)."""
    return pd.util.hash_array(np.asarray(strings.to_numpy(zero_copy_only=False), dtype=object))


def tokenize(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Hash every word of every text; returns (uint64 hash per word, index of its text), words in order.

    Words are lower-cased, split on whitespace and stripped of punctuation (the normalisation of GPT-3's and
    lm-eval's decontamination); words left empty are dropped. Normalising the chunk's vocabulary instead of
    the text keeps the regex work small.
    """
    words = pc.utf8_split_whitespace(pc.utf8_lower(pa.array(texts, pa.large_string())))
    doc = np.repeat(np.arange(len(texts), dtype=np.int64), pc.list_value_length(words).to_numpy(zero_copy_only=False))
    encoded = pc.dictionary_encode(pc.list_flatten(words))
    vocab = pc.replace_substring_regex(encoded.dictionary, _NON_WORD, "")
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    keep = (pc.utf8_length(vocab).to_numpy(zero_copy_only=False) > 0)[codes]
    return string_hashes(vocab)[codes][keep], doc[keep]


def group_starts(doc: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]]) if len(doc) else np.empty(0, np.int64)


def sequence_hashes(tokens: np.ndarray, doc: np.ndarray, n_docs: int) -> np.ndarray:
    """One order-sensitive hash per text of its normalised word sequence: the exact-duplicate key."""
    position = (np.arange(len(doc)) - np.searchsorted(doc, doc)).astype(np.uint64)
    contrib = mix64(tokens + position * GRAM_MULT)
    out = np.zeros(n_docs, np.uint64)
    starts = group_starts(doc)
    if len(starts):
        out[doc[starts]] = np.add.reduceat(contrib, starts)
    return mix64(out ^ np.bincount(doc, minlength=n_docs).astype(np.uint64))


def ngram_hashes(
    tokens: np.ndarray, doc: np.ndarray, n: int, short_as_unigrams: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Hash every run of `n` consecutive words inside one text; returns (uint64 hashes, text index), in order.

    With `short_as_unigrams`, texts of fewer than `n` words contribute their single words instead of nothing.
    """
    m = len(tokens) - n + 1
    if m > 0:
        grams = tokens[:m].copy()
        for k in range(1, n):
            grams = grams * GRAM_MULT + tokens[k : k + m]
        inside = doc[:m] == doc[n - 1 :]
        grams, gram_doc = mix64(grams[inside]), doc[:m][inside]
    else:
        grams, gram_doc = np.empty(0, np.uint64), np.empty(0, np.int64)
    if not short_as_unigrams or n == 1:
        return grams, gram_doc
    short = np.bincount(doc, minlength=int(doc.max(initial=-1)) + 1) < n
    pick = short[doc]
    merged_doc = np.concatenate([gram_doc, doc[pick]])
    order = np.argsort(merged_doc, kind="stable")
    return np.concatenate([grams, tokens[pick]])[order], merged_doc[order]
