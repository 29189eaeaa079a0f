"""Content-addressed response cache in SQLite: a repeated call costs nothing and returns the same answer.

SQLite in WAL mode gives atomic, concurrent-safe writes from several processes and survives `kill -9` without
corruption; each put commits on its own, so nothing paid for is lost. Only successful, validated responses are put
here; failures never are, so a rerun retries them. The one exception is kept apart: a request the endpoint refused
(`refusals`, by request and context window), so that a rerun sends it again only when something changed.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from glan_utils.core.errors import StoreError


class ResponseCache:
    """Maps a call's content hash to its response JSON."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS refusals (key TEXT PRIMARY KEY, reason TEXT NOT NULL, created REAL)"
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open response cache {self.path}: {exc}") from None
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Insert once; an existing entry for the key wins, so concurrent writers agree on one answer."""
        try:
            with self._lock:
                self._db.execute(
                    "INSERT OR IGNORE INTO responses (key, value, created) VALUES (?, ?, ?)",
                    (key, json.dumps(value, ensure_ascii=False), time.time()),
                )
        except sqlite3.Error as exc:  # disk full, read-only: one clear line; the transaction rolled back
            raise StoreError(f"cannot write response cache {self.path}: {exc}") from None

    def refusals(self) -> dict[str, str]:
        """Requests refused before: key -> the refusal (few; read once when a client opens)."""
        with self._lock:
            return dict(self._db.execute("SELECT key, reason FROM refusals").fetchall())

    def put_refusal(self, key: str, reason: str) -> None:
        try:
            with self._lock:
                row = (key, reason, time.time())
                self._db.execute("INSERT OR REPLACE INTO refusals (key, reason, created) VALUES (?, ?, ?)", row)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write response cache {self.path}: {exc}") from None

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
