"""`oracle report drift`: real vs paper trades -> drift table (stdout) and an equity-curves PNG.

Input, by default: the closed trades of the local store (read-only, safe while the system runs: `--db PATH`, else
`$ORACLE_DB`, else the configured `persistence.sqlite_path`; `--session ID` for one session). Or files of closed
trades, each what `oracle report trades` writes (`--format csv`, `json`, or its table saved to a file: its rows'
`timestamp` is the exit time, openings are skipped), or a trade list of your own: CSV (header row) or JSON (a list
of objects, or `{"trades": [...]}`) with `symbol`, `direction` (1/-1), `lot` (or `volume`, in lots), `entry_time`
(optional), `exit_time` (Unix seconds), `is_paper` (true/false), and the money (deposit currency): `pnl` (net)
and/or `gross_pnl` (the price move), `commission` (a charge, either sign) and `swap` (signed). The drift splits
into price (gross) and cost (commission, swap) parts (drift.py).
`--real FILE` and `--paper FILE` force `is_paper` for every trade of that file; positional files keep their own.

The plot goes to `--png PATH` (default `var/reports/drift.png` under ORACLE_HOME; `--no-png`: none) and its path
is printed. A bad input is one line naming the file, the row and the column, exit code 2.

    oracle report drift                                  # the store
    oracle report trades --format csv --limit 0 > trades.csv && oracle report drift trades.csv
    oracle report drift --real real.csv --paper paper.json --since 1764115200 --png drift.png
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.paper.drift import ALL, CLOSING_ACTIONS, TradeRecord, drift_table, equity_curves, render_markdown

PROG = "oracle report drift"
DB_ENV = "ORACLE_DB"
DEFAULT_PNG = Path("var") / "reports" / "drift.png"  # under ORACLE_HOME
TABLE_EDGES = "┏┡└┌├╭╰━─"  # the lines of a rich table that hold no row


class ReportInputError(ValueError):
    pass


def records_from_rows(rows: Iterable[Mapping[str, Any]], source: str,
                      is_paper: bool | None = None) -> list[TradeRecord]:
    """Rows -> closed trades (a row of the store's `trades` table: its openings skipped); an error names the source,
    the row number and the column."""
    out = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise ReportInputError(f"{source} row {number}: expected an object of columns, not "
                                   f"{type(row).__name__}")
        try:
            record = TradeRecord.from_dict(row) if "exit_time" in row or "timestamp" not in row else \
                TradeRecord.from_store_row(row)
        except KeyError as exc:
            raise ReportInputError(f"{source} row {number}: no column {exc.args[0]!r} (a trade needs symbol, "
                                   "direction, exit_time or timestamp, pnl)") from None
        except (TypeError, ValueError) as exc:
            raise ReportInputError(f"{source} row {number}: {exc}") from None
        if record is not None:
            out.append(record if is_paper is None else replace(record, is_paper=is_paper))
    return out


def parse_table(text: str, source: str) -> list[dict[str, str]]:
    """The rows of a table `oracle report trades` printed (rich's box characters); a cell folded over several
    lines is joined."""
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in TABLE_EDGES:
            continue
        if stripped[0] == "┃":
            cells = [c.strip() for c in stripped.strip("┃").split("┃")]
            header = cells if header is None else [h + c for h, c in zip(header, cells, strict=True)]
            continue
        if stripped[0] != "│" or header is None:
            continue  # the title
        cells = [c.strip() for c in stripped.strip("│").split("│")]
        if len(cells) != len(header):
            raise ReportInputError(f"{source}: a table row has {len(cells)} cells, the header {len(header)}")
        if rows and not cells[0]:  # a folded cell's continuation
            rows[-1] = {h: rows[-1][h] + c for h, c in zip(header, cells, strict=True)}
        else:
            rows.append(dict(zip(header, cells, strict=True)))
    if header is None:
        raise ReportInputError(f"{source}: no table header (┃ timestamp ┃ ...) found")
    return rows


def read_rows(path: Path) -> list[Mapping[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportInputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportInputError(f"{path}: cannot read: {exc}") from None
    head = text.lstrip()[:1]
    if head in ("[", "{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReportInputError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        if isinstance(data, Mapping):
            data = data.get("trades")
        if not isinstance(data, list):
            raise ReportInputError(f"{path}: expected a JSON list of trades or {{\"trades\": [...]}}")
        return data
    if "┃" in text:
        return parse_table(text, str(path))
    rows = list(csv.DictReader(text.splitlines()))
    if rows and None in rows[0]:
        raise ReportInputError(f"{path} row 1: more cells than the header has columns")
    return rows


def default_db() -> Path:
    """$ORACLE_DB, else the configured persistence.sqlite_path (relative to ORACLE_HOME)."""
    if os.environ.get(DB_ENV):
        return Path(os.environ[DB_ENV])
    from common import config

    cfg = config.load()
    return cfg.path(cfg.persistence.sqlite_path)


def store_trades(db: Path, session: str | None) -> list[TradeRecord]:
    """The closed trades of the store (read-only), real and paper."""
    from common.records import schema as rec

    if not db.is_file():
        raise ReportInputError(f"no store at {db} (give --db PATH, set ${DB_ENV}, or give trade files)")
    sql = f"SELECT * FROM trades WHERE action IN ({', '.join('?' * len(CLOSING_ACTIONS))})"
    params: list[Any] = list(CLOSING_ACTIONS)
    if session:
        sql += " AND session_id = ?"
        params.append(session)
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = [rec.to_json(rec.from_sqlite_row("trades", r)) for r in conn.execute(sql + " ORDER BY timestamp",
                                                                                      params)]
    except sqlite3.Error as exc:
        raise ReportInputError(f"{db}: cannot read the trades: {exc}") from None
    finally:
        conn.close()
    return records_from_rows(rows, str(db))


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def plot_equity_curves(trades: Sequence[TradeRecord], path: Path) -> None:
    """One panel per symbol plus ALL: cumulative net PnL by exit time, real vs paper."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = equity_curves(trades)
    symbols = [ALL, *sorted({t.symbol for t in trades})]
    start = min((t.exit_time for t in trades), default=0)  # every curve starts at 0 here
    fig, axes = plt.subplots(len(symbols), 1, figsize=(10, 2.8 * len(symbols)), squeeze=False)
    for ax, symbol in zip(axes[:, 0], symbols, strict=True):
        for is_paper, style in ((False, "-o"), (True, "--s")):
            points = curves.get((symbol, is_paper), [])
            if points:
                xs = [_utc(start)] + [_utc(t) for t, _ in points]
                ys = [0.0] + [pnl for _, pnl in points]
                ax.step(xs, ys, style, where="post", markersize=3, label="paper" if is_paper else "real")
        ax.set_title(symbol)
        ax.set_ylabel("cumulative PnL")
        ax.axhline(0.0, linewidth=0.5, color="grey")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best")
    axes[-1, 0].set_xlabel("exit time (UTC)")
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Real vs paper trades: drift per symbol (the store's closed "
                                "trades by default, or trade files).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("files", nargs="*", type=Path, help="trade files with their own is_paper column (what `oracle "
                   "report trades` writes, any format); none: the store")
    p.add_argument("--real", action="append", default=[], type=Path, help="file of real trades")
    p.add_argument("--paper", action="append", default=[], type=Path, help="file of paper trades")
    p.add_argument("--db", type=Path, default=None, help=f"the store to read when no file is given (default: "
                   f"${DB_ENV}, else persistence.sqlite_path)")
    p.add_argument("--session", default=None, help="only this session's trades (from the store)")
    p.add_argument("--since", type=int, default=None, help="exit time >= (Unix seconds)")
    p.add_argument("--until", type=int, default=None, help="exit time < (Unix seconds)")
    p.add_argument("--png", type=Path, default=None, help=f"write the equity curves here (default: "
                   f"{DEFAULT_PNG} under ORACLE_HOME)")
    p.add_argument("--no-png", action="store_true", help="no plot")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sources = [(f, None) for f in args.files] + [(f, False) for f in args.real] + [(f, True) for f in args.paper]
    trades: list[TradeRecord] = []
    try:
        if sources:
            for path, is_paper in sources:
                trades += records_from_rows(read_rows(path), str(path), is_paper)
            where = ", ".join(str(p) for p, _ in sources)
        else:
            db = args.db or default_db()
            trades = store_trades(db, args.session)
            where = f"the store {db}" + (f", session {args.session}" if args.session else "")
    except ReportInputError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # the configuration (common.config.ConfigError), naming its key
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    trades = [t for t in trades if (args.since is None or t.exit_time >= args.since)
              and (args.until is None or t.exit_time < args.until)]
    rows = drift_table(trades)
    if args.json:
        print(json.dumps([row.__dict__ for row in rows], indent=2))
    else:
        print(render_markdown(rows))
        print(f"{len(trades)} closed trades from {where}")
    if not args.no_png:
        from common import config

        png = args.png or config.home() / DEFAULT_PNG
        plot_equity_curves(trades, png)
        print(f"equity curves: {png.resolve()}", file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
