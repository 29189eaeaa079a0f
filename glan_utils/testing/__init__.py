"""Test doubles that run for real: a scriptable OpenAI-compatible server on loopback and its fake-JSON generator.

Names are imported lazily so that `python -m glan_utils.testing.openai_server` runs without runpy's
double-import warning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from glan_utils.testing.fake_json import fake_json, wrong_json
    from glan_utils.testing.openai_server import DEFAULT_FAULT_KINDS, KINDS, Behavior, OpenAIServer

_HOMES = {
    "fake_json": "fake_json",
    "wrong_json": "fake_json",
    "DEFAULT_FAULT_KINDS": "openai_server",
    "KINDS": "openai_server",
    "Behavior": "openai_server",
    "OpenAIServer": "openai_server",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
