"""Settings, read from ``BATCHD_*`` environment variables and an optional TOML file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
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
    announce_interval_s: float = Field(
        default=10.0, gt=0,
        description="How often a server or worker refreshes its announcement in the "
        "database (its role, the tasks it claims, the settings every process must share); "
        "one not refreshed for three intervals counts as gone.",
    )

    default_parallelism: int | None = Field(
        default=None, ge=1,
        description="Items of one batch running at once when the batch sets no cap; unset: "
        "no per-batch cap (each worker's worker_concurrency bounds what it runs).",
    )
    default_max_attempts: int = Field(default=3, ge=1)
    key_cache_s: float = Field(
        default=1.0, ge=0,
        description="How long a server trusts a valid key it has looked up; a revocation "
        "made on another server or with the CLI takes effect within it (0: every request).",
    )
    max_body_bytes: int = Field(
        default=512 * 1024 * 1024, ge=0,
        description="Largest request body: NDJSON and CSV uploads, parsed as they arrive.",
    )
    max_json_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=0,
        description="Largest body held whole while it is parsed (a JSON or BSON document: "
        "the dialects' create routes, Spark chunks, a native JSON batch).",
    )
    max_control_body_bytes: int = Field(
        default=64 * 1024, ge=0,
        description="Largest body of the other routes (cancel, keys, tenants, …).",
    )
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

    # AI job queue (seed 003): providers, prices, automatic flush and poll.
    aibatch_provider: Literal["local", "anthropic", "openai"] = Field(
        default="local", description="Where flushes go: the engine itself, or a provider."
    )
    aibatch_anthropic_api_key: str | None = None
    aibatch_anthropic_base_url: str | None = Field(
        default=None, description="Another Anthropic endpoint (a proxy, a test server)."
    )
    aibatch_anthropic_model: str = "claude-haiku-4-5"
    aibatch_openai_api_key: str | None = None
    aibatch_openai_base_url: str | None = Field(
        default=None, description="Another OpenAI endpoint, ending in /v1."
    )
    aibatch_openai_model: str = "gpt-4o-mini"
    aibatch_max_tokens: int = Field(default=1024, ge=1, description="Answer cap per job.")
    aibatch_local_model: str = Field(
        default="local", description="The price-table row the local provider's jobs use."
    )
    aibatch_prices: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="USD per million tokens by model, merged over the defaults: "
        '{"model": {"input": 3, "output": 15, "batch_input": 1.5, "batch_output": 7.5}} '
        "(batch rates default to half).",
    )
    aibatch_auto_flush_count: int = Field(
        default=0, ge=0, description="Flush a tenant once this many jobs are ready; 0 = off."
    )
    aibatch_auto_flush_age_s: float = Field(
        default=0.0, ge=0, description="Flush a tenant once a ready job waited this long; 0 = off."
    )
    aibatch_auto_flush_max_jobs: int = Field(default=10_000, ge=1, le=10_000)
    aibatch_auto_poll_interval_s: float = Field(
        default=0.0, ge=0, description="Poll unfinished provider batches this often; 0 = off."
    )
    aibatch_loop_interval_s: float = Field(
        default=1.0, gt=0, description="How often the auto-flush loop looks at the queue."
    )
    aibatch_submit_timeout_s: float = Field(
        default=600.0, gt=0,
        description="Jobs of a flush whose provider never answered go back to pending after this.",
    )

    # Outbound requests (webhooks, HTTP tasks, the LLM endpoint), webhooks, the LLM kind.
    outbound_allow: str = Field(
        default="",
        description="What outbound URLs (webhooks, http tasks, the LLM endpoint) may reach "
        "beyond public addresses: a comma list of the kinds loopback, private, link_local "
        "and of CIDR networks (e.g. 'loopback' or '10.2.0.0/16, fd12:3456::/48').",
    )
    webhook_delivery: bool = Field(default=True, description="Workers deliver webhooks.")
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="One delivery attempt.")
    webhook_retry_base_s: float = Field(
        default=5.0, gt=0, description="Delay after the first failed attempt; doubles."
    )
    webhook_retry_max_s: float = Field(
        default=10800.0, gt=0, description="Longest delay between two attempts."
    )
    webhook_retry_window_s: float = Field(
        default=86400.0, gt=0,
        description="Failed deliveries are retried until this long after the event.",
    )
    webhook_lease_s: float = Field(
        default=60.0, gt=0,
        description="A claimed delivery is tried again after this long if its attempt was "
        "never recorded (its process died); keep it above webhook_timeout_s.",
    )
    webhook_poll_interval_s: float = Field(default=1.0, gt=0)
    webhook_concurrency: int = Field(default=16, ge=1, description="Deliveries at once.")
    llm_base_url: str = Field(
        default="https://api.openai.com/v1",
        description="OpenAI-compatible endpoint of llm tasks (…/chat/completions is appended).",
    )
    llm_api_key: str | None = None
    llm_model: str = Field(default="gpt-4o-mini", description="Model when neither the run's "
                           "runner nor the task names one.")
    llm_timeout_s: float = Field(default=120.0, gt=0)
    llm_prices: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="USD per million tokens by model for llm tasks' cost and estimate, "
        "merged over the default price table's standard rates: "
        '{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}.',
    )

    # Model upstreams and the /v1 dialects (OpenAI Batch + Files, Anthropic Message Batches).
    upstreams: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Model servers /v1 batch requests go to, routed by model: a JSON list of "
        '{"name", "base_url", "api_key"?, "style": "openai"|"anthropic", "models": [name or '
        '{"name", "aliases"}], "limits"?: {"concurrency", "rpm", "tpm"} (0 = none), '
        '"timeout_s"?}. The limits hold across every process on the database.',
    )
    upstream_share_interval_s: float = Field(
        default=0.5, gt=0,
        description="How often a process renews its share of an upstream's limits.",
    )
    upstream_share_lease_s: float = Field(
        default=5.0, gt=0,
        description="A share not renewed for this long is free for the other processes.",
    )
    upstream_max_attempts: int = Field(
        default=8, ge=1,
        description="Attempts of a /v1 request before it fails (429, 5xx, lost connections).",
    )
    v1_file_max_bytes: int = Field(default=200 * 1024 * 1024, ge=1,
                                   description="Largest /v1/files upload.")
    v1_batch_max_requests: int = Field(default=50_000, ge=1,
                                       description="Most requests in a /v1/batches input file.")
    v1_message_batch_max_requests: int = Field(
        default=100_000, ge=1, description="Most requests in a /v1/messages/batches batch.")
    v1_completion_window_s: float = Field(
        default=86400.0, gt=0,
        description="What completion_window '24h' (and a message batch's 24 hours) lasts; "
        "requests not done by then are reported expired.",
    )
    v1_finalize_interval_s: float = Field(
        default=0.5, gt=0, description="How often ended /v1 batches get their output files.")
    v1_file_expiry_s: float = Field(
        default=30 * 86400.0, gt=0,
        description="How long /v1/files of purpose batch and batch_output (a batch's output "
        "and error files) are kept when their upload or batch names no expires_after "
        "(OpenAI's default: 30 days); files of other purposes are kept until deleted.")

    # Parallel's Task Runs and Task Groups (/v1/tasks/...): processors and their runs.
    parallel_processors: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {name: {"model": None, "usd_per_run": usd} for name, usd in (
            ("lite", 0.005), ("base", 0.01), ("core", 0.025), ("pro", 0.1), ("ultra", 0.3))},
        description="Processors a task-spec run may name, each the model upstream model it "
        'runs on and its price per run: {"base": {"model": "tiny-chat", "usd_per_run": '
        '0.01}}; model null: the first model of the first upstream (BATCHD_UPSTREAMS).',
    )
    parallel_max_attempts: int = Field(
        default=3, ge=1, description="Attempts of a task-spec run (an answer that does not "
        "conform to the output schema, a 5xx, a lost connection) before it fails.")
    parallel_result_timeout_s: float = Field(
        default=600.0, gt=0, description="How long GET /v1/tasks/runs/{id}/result waits for a "
        "run when the request names no timeout (then 408: ask again).")

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
        from batchd.domain import limits

        limits.tier_table(value)  # raises ValueError naming an unknown tier or limit
        return value

    @field_validator("aibatch_prices", "llm_prices")
    @classmethod
    def _known_price_fields(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        from batchd.domain import pricing

        pricing.price_table(value)  # raises ValueError naming a bad field
        return value

    @field_validator("upstreams")
    @classmethod
    def _upstreams(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from batchd.domain import upstreams

        upstreams.parse(value)  # raises ValueError naming the problem
        return value

    @field_validator("parallel_processors")
    @classmethod
    def _processors(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from batchd.domain import processors

        processors.parse(value)  # raises ValueError naming the problem
        return value

    @field_validator("outbound_allow")
    @classmethod
    def _outbound_allow(cls, value: str) -> str:
        from batchd.netguard import OutboundPolicy

        OutboundPolicy.parse(value)  # raises ValueError naming a bad entry
        return value

    @model_validator(mode="after")
    def _llm_endpoint_allowed(self) -> Settings:
        from batchd.netguard import literal_refusal

        reason = literal_refusal(self.llm_base_url, self.outbound_policy())
        if reason is not None:  # a name is checked against its addresses at every call
            raise ValueError(f"llm_base_url: {reason}; allow it with BATCHD_OUTBOUND_ALLOW "
                             "(e.g. 'loopback' or its network as CIDR)")
        return self

    def outbound_policy(self) -> Any:
        """The :class:`batchd.netguard.OutboundPolicy` of ``outbound_allow``."""
        from batchd.netguard import OutboundPolicy

        return OutboundPolicy.parse(self.outbound_allow)

    def task_modules(self) -> list[str]:
        return [m.strip() for m in self.tasks.split(",") if m.strip()]

    def store_options(self) -> dict[str, Any]:
        if self.database_url.startswith("sqlite"):
            return {}
        return {"min_connections": self.db_pool_min, "max_connections": self.db_pool_max}

    def public(self) -> dict[str, Any]:
        return self.model_dump(
            exclude={"admin_key", "aibatch_anthropic_api_key", "aibatch_openai_api_key",
                     "llm_api_key", "upstreams"}
        )


class SettingsError(ValueError):
    """Settings that cannot be used, said in one line that names the culprit."""


def load_settings(**overrides: Any) -> Settings:
    """The process's settings, checked: a config file that is missing, unreadable or
    names unknown settings, or a bad value anywhere, raises :class:`SettingsError`."""
    import os
    import tomllib

    from pydantic import ValidationError

    config = os.environ.get("BATCHD_CONFIG_FILE")
    if config:
        try:
            with open(config, "rb") as f:
                keys = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read BATCHD_CONFIG_FILE {config}: {exc}") from None
        unknown = sorted(set(keys) - set(Settings.model_fields))
        if unknown:
            raise SettingsError(
                f"{config}: unknown settings {', '.join(unknown)} (keys are the BATCHD_* "
                f"names in lower case without the prefix, e.g. database_url)"
            )
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        where = f" (environment or {config})" if config else " (environment)"
        raise SettingsError(f"invalid settings{where}: {problems}") from None
