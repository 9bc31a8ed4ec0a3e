"""`oracle report sessions|trades|events`: print records from the local SQLite store.

    report sessions|trades|events [--db PATH] [--format table|csv|json] [--limit N]
           [--session ID] [--symbol SYM] [--paper|--real] [--type EVENT_TYPE]

Reads only; opens the store read-only so it never blocks or changes a running system.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from common import config
from common.records import schema as rec

DEFAULT_DB_ENV = "ORACLE_DB"

# Columns shown in the table view (csv and json show every column).
TABLE_COLUMNS = {
    "sessions": ["session_id", "start_time", "end_time", "status", "end_reason", "initial_balance",
                 "final_balance", "total_trades", "total_pnl", "recovered_count", "symbols"],
    "trades": ["timestamp", "session_id", "symbol", "action", "direction", "intensity", "volume",
               "entry_price", "exit_price", "pnl", "pnl_pips", "commission", "is_paper", "hmm_state"],
    "events": ["timestamp", "session_id", "event_type", "severity", "source", "symbol", "message", "data"],
}
TIME_COLUMN = {"sessions": "start_time", "trades": "timestamp", "events": "timestamp"}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="oracle report", description="Show sessions, trades or events.")
    p.add_argument("what", choices=sorted(TABLE_COLUMNS))
    p.add_argument("--db", type=Path, default=None,
                   help=f"SQLite store (default: ${DEFAULT_DB_ENV}, else persistence.sqlite_path of the config)")
    config.add_arguments(p)  # the configuration as every command selects it (for the default store path)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--limit", type=int, default=50, help="newest N rows (0: all)")
    p.add_argument("--session", help="only this session_id")
    p.add_argument("--symbol", help="only this symbol (trades, events)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--paper", action="store_true", help="only paper trades")
    g.add_argument("--real", action="store_true", help="only real trades")
    p.add_argument("--type", dest="event_type", help="only this event type (events)")
    args = p.parse_args(list(argv))
    if args.limit < 0:
        p.error("--limit must be >= 0")
    return args


def default_db(config_path: Path | None = None, overlay: Path | None = None) -> Path:
    """$ORACLE_DB, else the configured persistence.sqlite_path (relative to ORACLE_HOME)."""
    if os.environ.get(DEFAULT_DB_ENV):
        return Path(os.environ[DEFAULT_DB_ENV])
    try:
        cfg = config.load(config_path, overlay)
        return cfg.path(cfg.persistence.sqlite_path)
    except config.ConfigError:
        return config.home() / "var" / "data" / "oracle.db"


def fetch(db: Path, table: str, *, limit: int, session: str | None = None, symbol: str | None = None,
          is_paper: bool | None = None, event_type: str | None = None) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (JSON columns decoded, booleans as bool), newest first."""
    cols = rec.columns(table)
    where, params = [], []
    for col, value in (("session_id", session), ("symbol", symbol if "symbol" in cols else None),
                       ("event_type", event_type if table == "events" else None)):
        if value is not None:
            where.append(f'"{col}" = ?')
            params.append(value)
    if is_paper is not None and table == "trades":
        where.append("is_paper = ?")
        params.append(int(is_paper))
    sql = f"SELECT * FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f' ORDER BY "{TIME_COLUMN[table]}" DESC, rowid DESC'
    if limit:
        sql += f" LIMIT {int(limit)}"
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(sql, params).fetchall()
    finally:
        conn.close()
    return [rec.to_json(rec.from_sqlite_row(table, r)) for r in rows]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.5f}".rstrip("0").rstrip(".") if abs(value) < 10 else f"{value:.2f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def render(table: str, rows: list[dict[str, Any]], fmt: str, out: IO[str]) -> None:
    if fmt == "json":
        json.dump(rows, out, indent=2)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=rec.columns(table), lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: _cell(v) if isinstance(v, (dict, list)) else v for k, v in r.items()})
    else:
        from rich.console import Console
        from rich.table import Table

        view = Table(title=f"{table} ({len(rows)})")
        for col in TABLE_COLUMNS[table]:
            view.add_column(col, overflow="fold")
        for r in rows:
            view.add_row(*(_cell(r.get(c)) for c in TABLE_COLUMNS[table]))
        Console(file=out, width=200 if not out.isatty() else None).print(view)


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout
    db = args.db or default_db(args.config, args.overlay)
    if not db.is_file():
        print(f"report: no store at {db} (use --db PATH or set ${DEFAULT_DB_ENV})", file=sys.stderr)
        return 2
    is_paper = True if args.paper else (False if args.real else None)
    try:
        rows = fetch(db, args.what, limit=args.limit, session=args.session, symbol=args.symbol,
                     is_paper=is_paper, event_type=args.event_type)
    except sqlite3.Error as exc:
        print(f"report: cannot read {db}: {exc}", file=sys.stderr)
        return 1
    render(args.what, rows, args.format, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
