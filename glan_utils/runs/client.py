"""A run's LLM client: the run's endpoint sections, its response cache, `ledger.jsonl` and embedded-server log.

`llm.client.open_client` takes only the sections it reads; this is where a run's directory layout meets it, so the
llm wing knows no run directory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from glan_utils.core.paths import LEDGER, ensure_writable_dir
from glan_utils.llm.cache import ResponseCache
from glan_utils.llm.client import LLMClient, open_client
from glan_utils.llm.ledger import Ledger
from glan_utils.settings import Settings

SERVER_LOG = "llama-server.log"


@asynccontextmanager
async def run_client(
    settings: Settings,
    stage: str = "",
    check: bool = True,
    *,
    cache: Any = None,
    ledger: Ledger | None = None,
    key: str | None = None,
) -> AsyncIterator[LLMClient]:
    """A ready client for the run's endpoint over the run's cache and ledger.

    `cache` and `ledger` replace the run dir's own (a Ray worker uses the driver's); then nothing is written locally.
    Both are closed on exit (a remote ledger flushes what it holds). `key` is the API key when this process's
    environment lacks `llm.api_key_env` (a Ray worker gets the driver's).
    """
    async with AsyncExitStack() as stack:
        if cache is None or ledger is None:
            ensure_writable_dir(settings.run_dir)
        cache = cache if cache is not None else ResponseCache(settings.cache_file)
        stack.callback(cache.close)
        ledger = ledger if ledger is not None else Ledger(settings.run_dir / LEDGER, settings.llm.prices)
        stack.callback(ledger.close)
        client = await stack.enter_async_context(
            open_client(
                settings.llm,
                settings.embedded,
                cache=cache,
                ledger=ledger,
                ledger_path=settings.run_dir / LEDGER,
                server_log=settings.run_dir / SERVER_LOG,
                seed=settings.seed,
                key=key,
                stage=stage,
                check=check,
            )
        )
        yield client
