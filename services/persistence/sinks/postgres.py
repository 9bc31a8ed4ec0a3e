"""PostgreSQL sink (psycopg 3), by DSN. Upserts on id; a row is only replaced by a higher rev.

The batch goes to the server as one JSON parameter and is expanded there with
`jsonb_populate_recordset`, so types (uuid, timestamptz, text[], jsonb) are converted by PostgreSQL
exactly as PostgREST does for the Supabase sink.
"""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from common.records import schema as rec
from services.persistence.sinks import Batch, SinkPermanent, SinkRetriable, is_permanent_sqlstate


def upsert_sql(table: str) -> sql.Composed:
    cols = rec.columns(table)
    ident = sql.Identifier(table)
    col_list = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
    updates = sql.SQL(", ").join(
        sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in cols if c != "id"
    )
    return sql.SQL(
        "INSERT INTO {t} ({cols}) SELECT {cols} FROM jsonb_populate_recordset(NULL::{t}, %s) "
        "ON CONFLICT (id) DO UPDATE SET {updates} WHERE {t}.rev < EXCLUDED.rev"
    ).format(t=ident, cols=col_list, updates=updates)


class PostgresSink:
    def __init__(self, dsn: str, *, name: str = "postgres", connect_timeout: float = 5.0,
                 statement_timeout_ms: int = 15000):
        if not dsn:
            raise ValueError("PostgresSink needs a DSN")
        self.name = name
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._statement_timeout_ms = statement_timeout_ms
        self._conn: psycopg.Connection | None = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            # prepare_threshold=None: no server-side prepared statements, so a transaction-mode pooler
            # (pgbouncer, Supabase's pooler) in front of the database works too.
            self._conn = psycopg.connect(
                self._dsn, connect_timeout=max(2, round(self._connect_timeout)), prepare_threshold=None,
            )
        return self._conn

    def push(self, batch: Batch) -> list[str]:
        if not batch.records:
            return []
        query = upsert_sql(batch.table)
        try:
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(self._statement_timeout_ms),))
                cur.execute(query, (Jsonb(batch.records),))
        except psycopg.Error as exc:
            code = getattr(exc, "sqlstate", None)
            text = f"postgres {batch.table}: {type(exc).__name__} {code or ''}: {str(exc).strip()}"
            if is_permanent_sqlstate(code):
                raise SinkPermanent(text) from exc
            self.close()  # the connection may be broken; reconnect next time
            raise SinkRetriable(text) from exc
        return batch.ids

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
