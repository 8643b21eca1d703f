"""Settings, read from ``BATCHD_*`` environment variables and an optional TOML file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    """Server, worker and storage settings.

    Every field can be set as ``BATCHD_<FIELD>`` in the environment, or in a TOML
    file named by ``BATCHD_CONFIG_FILE`` (environment wins).
    """

    model_config = SettingsConfigDict(env_prefix="BATCHD_", extra="ignore")

    database_url: str = "sqlite:///./batchd.db"
    host: str = "127.0.0.1"
    port: int = 8080
    admin_key: str | None = Field(default=None, description="Bootstrap admin key.")
    tasks: str = Field(default="", description="Comma-separated modules that register tasks.")
    load_example_tasks: bool = True
    load_entry_points: bool = True

    run_worker: bool = Field(default=True, description="Run a worker inside `batchd serve`.")
    worker_concurrency: int = Field(default=256, ge=1, description="Items in flight per worker.")
    worker_threads: int = Field(default=16, ge=1, description="Thread pool for sync handlers.")
    worker_processes: int = Field(default=2, ge=1, description="Process pool for CPU handlers.")
    lease_s: float = Field(default=30.0, gt=0, description="Lease length of a claimed item.")
    poll_interval_s: float = Field(default=0.2, gt=0, description="Idle worker poll interval.")
    reap_interval_s: float = Field(default=1.0, gt=0)
    commit_interval_s: float = Field(default=0.02, gt=0, description="Group-commit window.")
    commit_max_items: int = Field(default=512, ge=1)
    retry_backoff_s: float = Field(default=1.0, ge=0, description="First retry delay; doubles.")
    retry_backoff_max_s: float = Field(default=300.0, ge=0)
    tenant_max_running: int = Field(default=0, ge=0, description="Per-tenant cap; 0 = none.")

    default_parallelism: int = Field(default=64, ge=1)
    default_max_attempts: int = Field(default=3, ge=1)
    max_body_bytes: int = Field(default=512 * 1024 * 1024, description="Largest request body.")
    max_items_per_request: int = Field(default=10_000_000)
    max_record_bytes: int = Field(default=8 * 1024 * 1024)
    ingest_flush_items: int = Field(default=5000, ge=1)
    staging_ttl_s: float = Field(default=3600.0, description="Age of abandoned uploads to drop.")

    spark_idle_timeout_s: float = Field(
        default=1800.0, gt=0, description="Spark batches close after this long without activity."
    )
    spark_tenant_max_input_mb: float = Field(
        default=0.0, ge=0,
        description="Spark: a tenant's total input buffer over its batches, MB; 0 = no limit.",
    )
    spark_tenant_max_output_mb: float = Field(
        default=0.0, ge=0,
        description="Spark: a tenant's total output buffer; new chunks wait while it is full.",
    )

    tier_limits: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Overrides of the tiers' limits, {tier: {limit: value}} with limits "
        "max_batch_size, api_calls, items, cost_usd (per month; -1 = unlimited), e.g. "
        '{"free": {"api_calls": 500}}.',
    )

    db_pool_min: int = Field(default=2, ge=1, description="PostgreSQL pool: idle connections.")
    db_pool_max: int = Field(default=10, ge=1, description="PostgreSQL pool: most connections.")

    config_file: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        import os

        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get("BATCHD_CONFIG_FILE")
        if path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @field_validator("tier_limits")
    @classmethod
    def _known_tiers(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        from batchd.core import quotas

        quotas.tier_table(value)  # raises ValueError naming an unknown tier or limit
        return value

    def task_modules(self) -> list[str]:
        return [m.strip() for m in self.tasks.split(",") if m.strip()]

    def store_options(self) -> dict[str, Any]:
        if self.database_url.startswith("sqlite"):
            return {}
        return {"min_connections": self.db_pool_min, "max_connections": self.db_pool_max}

    def public(self) -> dict[str, Any]:
        return self.model_dump(exclude={"admin_key"})
