-- The local SQLite store: the same record tables and columns as migrations/*.sql (PostgreSQL), kept by
-- hand and checked by tests/services/persistence/test_pers_schema.py. Type mapping: uuid/text -> TEXT,
-- timestamptz -> TEXT (ISO-8601 UTC, fixed width, so text order is time order), integer/smallint/bigint
-- and boolean -> INTEGER, double precision -> REAL, text[] and jsonb -> TEXT holding JSON.
-- Plus the store's own bookkeeping: `outbox` (records not yet delivered, one row per sink and record).
-- The indexes are the local store's own: those its queries use (store.py, report.py, the query op's callers), not
-- PostgreSQL's; every index costs pages in each bar's commits (signals and acks keep only their session index).
-- A change here is also a local migration (local_migrations.py) for the stores made before it.

CREATE TABLE IF NOT EXISTS sessions (
    id               TEXT PRIMARY KEY NOT NULL,
    rev              INTEGER NOT NULL DEFAULT 0,
    session_id       TEXT NOT NULL UNIQUE,
    start_time       TEXT NOT NULL,
    end_time         TEXT,
    initial_balance  REAL,
    final_balance    REAL,
    total_trades     INTEGER NOT NULL DEFAULT 0,
    total_pnl        REAL NOT NULL DEFAULT 0,
    symbols          TEXT NOT NULL DEFAULT '[]',
    status           TEXT NOT NULL DEFAULT 'RUNNING',
    end_reason       TEXT,
    recovered_count  INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS sessions_start_time_idx ON sessions (start_time);
CREATE INDEX IF NOT EXISTS sessions_status_idx ON sessions (status);

CREATE TABLE IF NOT EXISTS trades (
    id               TEXT PRIMARY KEY NOT NULL,
    rev              INTEGER NOT NULL DEFAULT 0,
    session_id       TEXT NOT NULL,
    trade_id         TEXT,
    "timestamp"      TEXT NOT NULL,
    bar_time         TEXT,
    symbol           TEXT NOT NULL,
    direction        INTEGER NOT NULL,
    intensity        INTEGER NOT NULL DEFAULT 0,
    action           TEXT NOT NULL,
    volume           REAL NOT NULL DEFAULT 0,
    entry_price      REAL,
    exit_price       REAL,
    pnl              REAL NOT NULL DEFAULT 0,
    pnl_pips         REAL NOT NULL DEFAULT 0,
    commission       REAL NOT NULL DEFAULT 0,
    swap             REAL NOT NULL DEFAULT 0,
    hmm_state        INTEGER,
    is_paper         INTEGER NOT NULL DEFAULT 0,
    comment          TEXT,
    position_id      TEXT,
    client_order_id  TEXT,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS trades_session_idx ON trades (session_id);
CREATE INDEX IF NOT EXISTS trades_symbol_time_idx ON trades (symbol, "timestamp");
CREATE INDEX IF NOT EXISTS trades_paper_time_idx ON trades (is_paper, "timestamp");
CREATE INDEX IF NOT EXISTS trades_time_idx ON trades ("timestamp");

CREATE TABLE IF NOT EXISTS events (
    id               TEXT PRIMARY KEY NOT NULL,
    rev              INTEGER NOT NULL DEFAULT 0,
    session_id       TEXT,
    "timestamp"      TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    severity         TEXT NOT NULL DEFAULT 'INFO',
    source           TEXT,
    symbol           TEXT,
    message          TEXT,
    data             TEXT NOT NULL DEFAULT '{}',
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS events_session_idx ON events (session_id);
CREATE INDEX IF NOT EXISTS events_type_time_idx ON events (event_type, "timestamp");
CREATE INDEX IF NOT EXISTS events_time_idx ON events ("timestamp");

CREATE TABLE IF NOT EXISTS session_heartbeats (
    id               TEXT PRIMARY KEY NOT NULL,
    rev              INTEGER NOT NULL DEFAULT 0,
    session_id       TEXT NOT NULL,
    "timestamp"      TEXT NOT NULL,
    system_state     TEXT,
    balance          REAL,
    equity           REAL,
    open_positions   INTEGER,
    backlog          INTEGER,
    data             TEXT NOT NULL DEFAULT '{}',
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS session_heartbeats_session_time_idx ON session_heartbeats (session_id, "timestamp");

CREATE TABLE IF NOT EXISTS signals (
    id               TEXT PRIMARY KEY NOT NULL,
    rev              INTEGER NOT NULL DEFAULT 0,
    session_id       TEXT,
    "timestamp"      TEXT NOT NULL,
    bar_time         TEXT NOT NULL,
    symbol           TEXT NOT NULL,
    timeframe        TEXT,
    action           TEXT NOT NULL,
    direction        INTEGER NOT NULL,
    intensity        INTEGER NOT NULL DEFAULT 0,
    hmm_state        INTEGER,
    seq              INTEGER,
    src_epoch        TEXT,
    data             TEXT NOT NULL DEFAULT '{}',
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS signals_session_idx ON signals (session_id);

CREATE TABLE IF NOT EXISTS acks (
    id               TEXT PRIMARY KEY NOT NULL,
    rev              INTEGER NOT NULL DEFAULT 0,
    session_id       TEXT,
    "timestamp"      TEXT NOT NULL,
    symbol           TEXT NOT NULL,
    bar_time         TEXT,
    signal_id        TEXT,
    signal_seq       INTEGER,
    decision         TEXT NOT NULL,
    status           TEXT,
    client_order_id  TEXT,
    position_id      TEXT,
    volume           REAL,
    price            REAL,
    latency_ms       REAL,
    reason           TEXT,
    data             TEXT NOT NULL DEFAULT '{}',
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS acks_session_idx ON acks (session_id);

CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    sink       TEXT NOT NULL,
    tbl        TEXT NOT NULL,
    rid        TEXT NOT NULL,
    rev        INTEGER NOT NULL,
    parked     INTEGER NOT NULL DEFAULT 0,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    UNIQUE (sink, tbl, rid)
);
CREATE INDEX IF NOT EXISTS outbox_pending_idx ON outbox (sink, parked, seq);
