"""Test doubles that run for real: a scriptable OpenAI-compatible server on loopback, and fake JSON.

The server's names are imported lazily so that `python -m glan_utils.testing.openai_server` runs without
runpy's "found in sys.modules" warning.

May import: `core`, `settings`, `llm`, `runs`, `stages`, `data`, `train`, `evaluation`, `views`, `app`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from glan_utils.testing.fake_json import fake_json, wrong_json

if TYPE_CHECKING:
    from glan_utils.testing.openai_server import DEFAULT_FAULT_KINDS, KINDS, Behavior, OpenAIServer

_SERVER_NAMES = ("DEFAULT_FAULT_KINDS", "KINDS", "Behavior", "OpenAIServer")
__all__ = ["DEFAULT_FAULT_KINDS", "KINDS", "Behavior", "OpenAIServer", "fake_json", "wrong_json"]


def __getattr__(name: str) -> Any:
    if name not in _SERVER_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.openai_server"), name)
