"""`oracle report drift`: real vs paper trades -> drift table (stdout) and an equity-curves PNG.

Input: one or more files of closed trades, each CSV (header row) or JSON (a list of objects, or
`{"trades": [...]}`). Columns/keys per trade: `symbol`, `direction` (1/-1), `lot` (or `volume`, in lots),
`entry_time` (optional), `exit_time` (Unix seconds), `is_paper` (true/false), and the money (deposit currency):
`pnl` (net) and/or `gross_pnl` (the price move), `commission` (a charge, either sign) and `swap` (signed); the
drift splits into price (gross) and cost (commission, swap) parts (drift.py).
`--real FILE` and `--paper FILE` force `is_paper` for every trade of that file; positional files keep their own.

    oracle report drift trades.json --png drift.png
    oracle report drift --real real.csv --paper paper.json --since 1764115200 --png drift.png
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.paper.drift import ALL, TradeRecord, drift_table, equity_curves, render_markdown


class ReportInputError(ValueError):
    pass


def records_from_rows(rows: Iterable[Mapping[str, Any]], source: str,
                      is_paper: bool | None = None) -> list[TradeRecord]:
    """Rows -> trade records; an error names the source and row number."""
    out = []
    for number, row in enumerate(rows, start=1):
        try:
            record = TradeRecord.from_dict(row)
        except (KeyError, TypeError, ValueError) as exc:
            raise ReportInputError(f"{source} row {number}: {type(exc).__name__} {exc}") from exc
        out.append(record if is_paper is None else replace(record, is_paper=is_paper))
    return out


def read_rows(path: Path) -> list[Mapping[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        return list(csv.DictReader(text.splitlines()))
    data = json.loads(text)
    if isinstance(data, Mapping):
        data = data.get("trades")
    if not isinstance(data, list):
        raise ReportInputError(f"{path}: expected a JSON list of trades or {{\"trades\": [...]}}")
    return data


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
        ax.legend(loc="best")
    axes[-1, 0].set_xlabel("exit time (UTC)")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oracle report drift", description="Real vs paper trades: drift per symbol.")
    p.add_argument("files", nargs="*", type=Path, help="trade files with their own is_paper column")
    p.add_argument("--real", action="append", default=[], type=Path, help="file of real trades")
    p.add_argument("--paper", action="append", default=[], type=Path, help="file of paper trades")
    p.add_argument("--since", type=int, help="exit time >= (Unix seconds)")
    p.add_argument("--until", type=int, help="exit time < (Unix seconds)")
    p.add_argument("--png", type=Path, help="write equity curves here")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sources = [(f, None) for f in args.files] + [(f, False) for f in args.real] + [(f, True) for f in args.paper]
    if not sources:
        print("oracle report drift: no trade files given", file=sys.stderr)
        return 2
    trades: list[TradeRecord] = []
    try:
        for path, is_paper in sources:
            trades += records_from_rows(read_rows(path), str(path), is_paper)
    except (OSError, json.JSONDecodeError, ReportInputError) as exc:
        print(f"oracle report drift: {exc}", file=sys.stderr)
        return 2
    trades = [t for t in trades if (args.since is None or t.exit_time >= args.since)
              and (args.until is None or t.exit_time < args.until)]
    rows = drift_table(trades)
    if args.json:
        print(json.dumps([row.__dict__ for row in rows], indent=2))
    else:
        print(render_markdown(rows))
    if args.png:
        plot_equity_curves(trades, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
