"""Supabase sink (supabase-py 2.x): upsert on id over PostgREST, one POST per batch.

Credentials come from the environment: SUPABASE_URL and SUPABASE_KEY (the service-role key: the
tables have row level security with no policy). supabase-py does not retry POSTs, and its default
timeout is 120 s, so the sink gives ClientOptions its own httpx client with the configured timeout.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import httpx
from postgrest import APIError
from postgrest.types import ReturnMethod
from supabase import Client, ClientOptions, create_client

from services.persistence.sinks import (
    Batch,
    SinkConfigError,
    SinkPermanent,
    SinkRetriable,
    is_permanent_sqlstate,
)

ENV_URL = "SUPABASE_URL"
ENV_KEY = "SUPABASE_KEY"


def credentials_from_env(env: Mapping[str, str]) -> tuple[str, str]:
    """(url, key) from the environment; a missing or empty variable is an error naming it."""
    missing = [v for v in (ENV_URL, ENV_KEY) if not env.get(v, "").strip()]
    if missing:
        raise SinkConfigError(f"supabase sink: environment variable(s) {', '.join(missing)} not set")
    return env[ENV_URL].strip(), env[ENV_KEY].strip()


class SupabaseSink:
    def __init__(self, url: str, key: str, *, name: str = "supabase", timeout: float = 10.0):
        self.name = name
        self._url = url
        self._key = key
        self._timeout = timeout
        self._client: Client | None = None
        self._http: httpx.Client | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: object) -> SupabaseSink:
        url, key = credentials_from_env(os.environ if env is None else env)
        return cls(url, key, **kwargs)  # type: ignore[arg-type]

    def _table(self, table: str):  # noqa: ANN202 - supabase-py's builder type
        if self._client is None:
            try:
                # Our own httpx client: supabase-py truncates a numeric postgrest_client_timeout to
                # int (0.5 s becomes 0: every connect fails) and deprecates that parameter.
                self._http = httpx.Client(timeout=httpx.Timeout(self._timeout), follow_redirects=True)
                self._client = create_client(
                    self._url, self._key,
                    options=ClientOptions(httpx_client=self._http, postgrest_client_retry=False),
                )
            except Exception as exc:  # supabase-py raises SupabaseException for a bad URL or key
                raise SinkConfigError(f"supabase sink: {exc}") from exc
        return self._client.table(table)

    def push(self, batch: Batch) -> list[str]:
        if not batch.records:
            return []
        try:
            self._table(batch.table).upsert(
                batch.records, on_conflict="id", returning=ReturnMethod.minimal
            ).execute()
        except APIError as exc:
            text = f"supabase {batch.table}: HTTP error {exc.code}: {exc.message}"
            if exc.details:
                text += f" ({exc.details})"
            if is_permanent_sqlstate(exc.code):
                raise SinkPermanent(text) from exc
            raise SinkRetriable(text) from exc
        except httpx.TimeoutException as exc:
            text = f"supabase {batch.table}: timed out after {self._timeout} s ({exc!r})"
            raise SinkRetriable(text) from exc
        except httpx.HTTPError as exc:
            raise SinkRetriable(f"supabase {batch.table}: {type(exc).__name__}: {exc}") from exc
        return batch.ids

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self._http = None
        self._client = None
