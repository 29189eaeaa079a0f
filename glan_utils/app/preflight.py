"""Checks before the first notebook starts: everything that can fail without compute fails here, in one line.

Settings are validated by `RunPlan.settings`; here: the files the settings name (a user taxonomy, a review file),
the API key of a remote endpoint, and each endpoint's reachability (connection refused told apart from a timeout)
and model list. The embedded model needs no check: it starts inside the first notebook.
"""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from glan_utils.app.runner import RunPlan
from glan_utils.core.errors import ConfigError, SetupError
from glan_utils.llm.endpoints import check_endpoint
from glan_utils.settings import Settings, api_key

PROBE_TIMEOUT_S = 10.0


def is_local(url: str) -> bool:
    """Loopback, private-network or single-label hosts (a cluster node): endpoints that need no API key."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or "." not in host:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private


def check_files(settings: Settings) -> None:
    for what, value in (("taxonomy file", settings.taxonomy.source), ("review file", settings.taxonomy.review_file)):
        if value and not Path(value).exists():
            raise ConfigError(f"{what} not found: {value}")


def _models_wanted(settings: Settings) -> set[str]:
    sections = (settings.taxonomy, settings.subjects, settings.syllabi, settings.questions, settings.answers)
    stage_models = {getattr(section, "model", None) for section in sections}
    return {m for m in {settings.llm.model, *stage_models} if m}


def check_endpoints(settings: Settings) -> None:
    """Each configured endpoint: key present when remote, reachable, serving every model the stages name."""
    llm = settings.llm
    urls = llm.base_urls or ([llm.base_url] if llm.base_url else [])
    if not urls:
        return
    if not llm.model:
        raise SetupError("llm.model is not set: name the model served by llm.base_url")
    key = api_key(llm)
    for url in urls:
        if key is None and not is_local(url):
            raise SetupError(f"no API key for {url}: set the environment variable {llm.api_key_env}")
        asyncio.run(
            check_endpoint(url, _models_wanted(settings), key=key, timeout_s=min(llm.timeout_s, PROBE_TIMEOUT_S))
        )


def preflight(plan: RunPlan) -> Settings:
    """Run every check that needs no compute; returns the settings checked. Raises ConfigError/SetupError."""
    settings = plan.settings
    check_files(settings)
    check_endpoints(settings)
    return settings
