"""Build the configured sinks from the `persistence.sinks` config section and the environment.

    persistence:
      sinks:
        supabase: {enabled: true, timeout_s: 10}      # SUPABASE_URL, SUPABASE_KEY from the environment
        postgres: {enabled: false, dsn: "${ORACLE_PG_DSN:}"}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.persistence.sinks import Sink, SinkConfigError


class SupabaseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    timeout_s: float = Field(10.0, gt=0)


class PostgresConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    dsn: str = ""
    connect_timeout_s: float = Field(5.0, gt=0)


class SinksConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    supabase: SupabaseConfig = SupabaseConfig()
    postgres: PostgresConfig = PostgresConfig()


def parse_sinks_config(section: Mapping[str, Any] | None) -> SinksConfig:
    try:
        return SinksConfig.model_validate(dict(section or {}))
    except ValidationError as exc:
        where = "; ".join(
            "persistence.sinks." + ".".join(str(p) for p in e["loc"]) + f": {e['msg']}" for e in exc.errors()
        )
        raise SinkConfigError(where) from None


def build_sinks(section: Mapping[str, Any] | None, env: Mapping[str, str] | None = None) -> list[Sink]:
    """The enabled sinks, in a fixed order. Their `name`s are the outbox names to open the Store with."""
    cfg = parse_sinks_config(section)
    env = os.environ if env is None else env
    sinks: list[Sink] = []
    if cfg.supabase.enabled:
        from services.persistence.sinks.supabase import SupabaseSink  # supabase costs ~50 MiB: import if used

        sinks.append(SupabaseSink.from_env(env, timeout=cfg.supabase.timeout_s))
    if cfg.postgres.enabled:
        if not cfg.postgres.dsn.strip():
            raise SinkConfigError(
                "persistence.sinks.postgres.dsn: required when the postgres sink is enabled"
            )
        from services.persistence.sinks.postgres import PostgresSink

        sinks.append(PostgresSink(cfg.postgres.dsn, connect_timeout=cfg.postgres.connect_timeout_s))
    return sinks
