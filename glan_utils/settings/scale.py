"""Settings of scale-out: the OpenAI Batch API and Ray."""

from __future__ import annotations

from pydantic import Field

from glan_utils.core.section import Section


class BatchSettings(Section):
    """How calls go through the OpenAI Batch API (paper-scale runs)."""

    completion_window: str = Field("24h", description="The Batch API's completion window.")
    max_requests_per_file: int = Field(50_000, ge=1, le=50_000, description="OpenAI allows 50,000 lines per file.")
    poll_interval_s: float = Field(60.0, gt=0, description="Seconds between status checks.")
    timeout_s: float | None = Field(None, gt=0, description="Give up waiting after this long; null = the window.")
    discount: float = Field(0.5, ge=0, le=1, description="Batch price as a fraction of the online price.")


class RaySettings(Section):
    """Where and how wide a distributed stage runs."""

    address: str | None = Field(
        None, description="Ray cluster address ('auto', 'ray://host:10001'); null = start a local cluster."
    )
    shard_size: int = Field(1000, ge=1, description="Tasks per Ray task; a shard is the unit of retry.")
    max_shards_in_flight: int | None = Field(None, ge=1, description="Default: 2 x cluster CPUs.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local cluster (null = all).")
