-- Oracle Trader persistence schema, version 1 (PostgreSQL 13+ / Supabase).
--
-- Every record is keyed by a client-made UUID `id` and carries `rev`, the record's version: a writer
-- that changes a record (a session that ends) sends the same id with a higher rev. Sinks upsert on id,
-- so a retried write is a no-op. `created_at` is set by the server and never sent by a client.
-- There are no foreign keys between tables on purpose: sinks receive records in batches per table and
-- a trade may arrive before its session row. Session references use the short `session_id` text.
--
-- Row level security is enabled with no policy: only the service role (which bypasses RLS) can read
-- or write through PostgREST; the anon key sees nothing.

CREATE TABLE sessions (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    rev              integer NOT NULL DEFAULT 0,
    session_id       text NOT NULL UNIQUE,
    start_time       timestamptz NOT NULL,
    end_time         timestamptz,
    initial_balance  double precision,
    final_balance    double precision,
    total_trades     integer NOT NULL DEFAULT 0,
    total_pnl        double precision NOT NULL DEFAULT 0,
    symbols          text[] NOT NULL DEFAULT '{}',
    status           text NOT NULL DEFAULT 'RUNNING' CHECK (status IN ('RUNNING', 'STOPPED')),
    end_reason       text CHECK (end_reason IN ('NORMAL', 'DAY_CHANGE', 'EMERGENCY', 'MANUAL', 'RECOVERED',
                                                'UNKNOWN')),
    recovered_count  integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sessions_start_time_idx ON sessions (start_time DESC);
CREATE INDEX sessions_status_idx ON sessions (status);

CREATE TABLE trades (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    rev              integer NOT NULL DEFAULT 0,
    session_id       text NOT NULL,
    trade_id         text,
    "timestamp"      timestamptz NOT NULL,
    bar_time         timestamptz,
    symbol           text NOT NULL,
    direction        smallint NOT NULL CHECK (direction IN (-1, 0, 1)),
    intensity        smallint NOT NULL DEFAULT 0 CHECK (intensity BETWEEN 0 AND 3),
    action           text NOT NULL,
    volume           double precision NOT NULL DEFAULT 0,
    entry_price      double precision,
    exit_price       double precision,
    pnl              double precision NOT NULL DEFAULT 0,
    pnl_pips         double precision NOT NULL DEFAULT 0,
    commission       double precision NOT NULL DEFAULT 0,
    swap             double precision NOT NULL DEFAULT 0,
    hmm_state        integer,
    is_paper         boolean NOT NULL DEFAULT false,
    comment          text,
    position_id      text,
    client_order_id  text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX trades_session_idx ON trades (session_id);
CREATE INDEX trades_symbol_time_idx ON trades (symbol, "timestamp" DESC);
CREATE INDEX trades_paper_time_idx ON trades (is_paper, "timestamp" DESC);
CREATE INDEX trades_time_idx ON trades ("timestamp" DESC);

CREATE TABLE events (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    rev              integer NOT NULL DEFAULT 0,
    session_id       text,
    "timestamp"      timestamptz NOT NULL,
    event_type       text NOT NULL,
    severity         text NOT NULL DEFAULT 'INFO' CHECK (severity IN ('DEBUG', 'INFO', 'WARNING', 'ERROR',
                                                                     'CRITICAL')),
    source           text,
    symbol           text,
    message          text,
    data             jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_session_idx ON events (session_id);
CREATE INDEX events_type_time_idx ON events (event_type, "timestamp" DESC);
CREATE INDEX events_time_idx ON events ("timestamp" DESC);

CREATE TABLE session_heartbeats (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    rev              integer NOT NULL DEFAULT 0,
    session_id       text NOT NULL,
    "timestamp"      timestamptz NOT NULL,
    system_state     text,
    balance          double precision,
    equity           double precision,
    open_positions   integer,
    backlog          integer,
    data             jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX session_heartbeats_session_time_idx ON session_heartbeats (session_id, "timestamp" DESC);

CREATE TABLE signals (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    rev              integer NOT NULL DEFAULT 0,
    session_id       text,
    "timestamp"      timestamptz NOT NULL,
    bar_time         timestamptz NOT NULL,
    symbol           text NOT NULL,
    timeframe        text,
    action           text NOT NULL CHECK (action IN ('WAIT', 'LONG', 'SHORT')),
    direction        smallint NOT NULL CHECK (direction IN (-1, 0, 1)),
    intensity        smallint NOT NULL DEFAULT 0 CHECK (intensity BETWEEN 0 AND 3),
    hmm_state        integer,
    seq              bigint,
    src_epoch        text,
    data             jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signals_session_idx ON signals (session_id);
CREATE INDEX signals_symbol_bar_idx ON signals (symbol, bar_time DESC);

CREATE TABLE acks (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    rev              integer NOT NULL DEFAULT 0,
    session_id       text,
    "timestamp"      timestamptz NOT NULL,
    symbol           text NOT NULL,
    bar_time         timestamptz,
    signal_id        uuid,
    signal_seq       bigint,
    decision         text NOT NULL,
    status           text,
    client_order_id  text,
    position_id      text,
    volume           double precision,
    price            double precision,
    latency_ms       double precision,
    reason           text,
    data             jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX acks_session_idx ON acks (session_id);
CREATE INDEX acks_symbol_bar_idx ON acks (symbol, bar_time DESC);
CREATE INDEX acks_signal_idx ON acks (signal_id);

ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE trades ENABLE ROW LEVEL SECURITY;
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE session_heartbeats ENABLE ROW LEVEL SECURITY;
ALTER TABLE signals ENABLE ROW LEVEL SECURITY;
ALTER TABLE acks ENABLE ROW LEVEL SECURITY;
