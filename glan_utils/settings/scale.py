"""Settings of scale-out: the OpenAI Batch API (`batch`) and where a stage's tasks run (`scale`: local or Ray)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from glan_utils.core.section import Section


class BatchSettings(Section):
    """How calls go through the OpenAI Batch API (`llm.mode: batch`)."""

    completion_window: str = Field("24h", description="The Batch API's completion window.")
    max_requests_per_file: int = Field(50_000, ge=1, le=50_000, description="OpenAI allows 50,000 lines per file.")
    max_bytes_per_file: int = Field(
        200_000_000, ge=1, le=200_000_000, description="OpenAI refuses batch input files over 200 MB."
    )
    max_enqueued_tokens: int | None = Field(
        None,
        ge=1,
        description="Your organisation's enqueued-token limit for the model (e.g. 2,000,000 for gpt-4o-mini at "
        "tier 1): files are submitted only while the estimated tokens of unfinished batches stay under it.",
    )
    poll_interval_s: float = Field(60.0, gt=0, description="Seconds between status checks.")
    timeout_s: float | None = Field(
        None, gt=0, description="Stop waiting after this long (a rerun resumes polling); null = until every batch ends."
    )
    discount: float = Field(0.5, ge=0, le=1, description="Batch price as a fraction of the online price.")
    remainder: Literal["resubmit", "online"] = Field(
        "resubmit",
        description="Lines a failed, expired or cancelled batch did not answer: 'resubmit' sends them in a new "
        "batch (up to max_waves), 'online' leaves them to the online run at full price.",
    )
    max_waves: int = Field(3, ge=1, description="Rounds of submit + collect before the rest is left to the run.")
    endpoint: str = Field(
        "/v1/chat/completions", description="Line url and batch endpoint; Azure OpenAI uses '/chat/completions'."
    )


class RaySettings(Section):
    """Where and how wide a distributed stage runs."""

    address: str | None = Field(
        None, description="Ray cluster address ('auto', 'ray://host:10001'); null = start a local cluster."
    )
    shard_size: int = Field(1000, ge=1, description="Tasks per Ray task; a shard is the unit of retry.")
    max_shards_in_flight: int | None = Field(None, ge=1, description="Default: 2 x cluster CPUs.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local cluster (null = all).")


class ScaleSettings(RaySettings):
    """Where a stage's pending tasks run: in this process, or sharded over a Ray cluster."""

    backend: Literal["local", "ray"] = Field(
        "local", description="local: this process; ray: shards over the Ray cluster at `address`."
    )
