"""Shared fixtures: a real OpenAI-compatible server on loopback and settings pointing at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from glan_utils.app.index import INDEX_FILE
from glan_utils.core.paths import cache_dir
from glan_utils.settings import Settings, load_settings
from glan_utils.testing import OpenAIServer


@pytest.fixture(autouse=True, scope="session")
def _own_run_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Tests never write the user's run index: the workbench cache (`GLAN_CACHE_DIR`, inherited by every `glan`
    and kernel the tests start) is a session folder whose entries link to the user's cache, all but the index,
    so downloaded models and benchmark files are still shared."""
    real, own = cache_dir(), tmp_path_factory.mktemp("glan-cache")
    for entry in real.iterdir() if real.is_dir() else []:
        if entry.name != INDEX_FILE:
            (own / entry.name).symlink_to(entry)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLAN_CACHE_DIR", str(own))
        yield own


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    with OpenAIServer(models=["fake-model"]) as server:
        yield server


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a run in a temp dir against a given endpoint; dotted overrides as keyword-free dict."""

    def make(base_url: str, overrides: dict[str, Any] | None = None) -> Settings:
        base = {
            "output_dir": str(tmp_path / "outputs"),
            "llm.base_url": base_url,
            "llm.model": "fake-model",
            "llm.cache_path": str(tmp_path / "cache.sqlite"),
            "llm.retry_max_wait_s": 0.2,
            "llm.timeout_s": 5,
        }
        return load_settings(None, {**base, **(overrides or {})}, environ={})

    return make
