"""Drift report: real trades vs paper trades, per symbol. Pure.

Verdict per symbol (a side "earns" when its net PnL over the window is > 0):

| real earns | paper earns | verdict | meaning |
|---|---|---|---|
| yes | yes | HEALTHY | the model works and the account follows it |
| no | yes | EXECUTION_DRIFT | the model earns, the account does not: execution or sync rule (missed entries) |
| no | no | MARKET_DRIFT | the model itself loses: the market moved away from what it learnt |
| yes | no | INVESTIGATE | unlikely: the account earns what the model does not |
| (no trades on either side) | | NO_DATA | |

Paper trades use the training lots (0.01/0.03/0.05) and a pip value of 10 USD per lot; real trades use the
configured lots. Money totals are therefore compared as they are AND per lot traded (`pnl_per_lot`), which is
the comparable figure when the real lots differ from the training ones.

Price and cost: a trade's net PnL is its price move (`gross_pnl`) plus its costs (commission and swap, <= 0 when
charged). Real trades carry the broker's gross PnL, commission and swap; paper trades the twin's gross PnL and the
training cost model's commission (no swap). Per symbol the drift (paper - real, net) splits into

    drift = price drift + cost drift
    price drift = paper gross - real gross            (entries, exits, slippage, missed and resized trades)
    cost drift  = drift - price drift                 (= paper costs - real costs: the cost model vs the broker)

so the two parts add up to the total exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

ALL = "ALL"
CONSISTENCY = 0.01  # money: a trade's pnl must equal gross - commission + swap within this (rounding to cents)


@dataclass(frozen=True)
class TradeRecord:
    """One closed trade, real or paper. Times are Unix seconds (bar times for paper, fill times for real)."""

    symbol: str
    direction: int
    lot: float
    entry_time: int | None
    exit_time: int
    pnl: float  # net: price move, commission and swap, deposit currency
    gross_pnl: float  # the price move alone
    is_paper: bool

    @property
    def costs(self) -> float:
        """Commission and swap, signed as money (<= 0 when charged)."""
        return self.pnl - self.gross_pnl

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TradeRecord:
        """From a paper trade's dict, a persistence row, a `closed.<SYM>` record or a report input row (extra keys
        ignored). Money: `gross_pnl` (or `gross_profit`) and/or `pnl` (or `net_profit`, net), `commission` (a charge
        whatever its sign: the broker reports it negative, the store positive) and `swap` (signed, + = credited).
        With the gross given, the net is gross - commission + swap (and must agree with a given net); with only the
        net, the gross is net + commission - swap."""
        entry = data.get("entry_time")
        commission = abs(_money(data.get("commission")))
        swap = _money(data.get("swap"))
        gross, net = _first(data, "gross_pnl", "gross_profit"), _first(data, "pnl", "net_profit")
        if gross is None and net is None:
            raise KeyError("pnl")
        if gross is not None:
            gross = float(gross)
            expected = gross - commission + swap
            if net is not None and abs(float(net) - expected) > CONSISTENCY:
                raise ValueError(f"pnl {net} is not gross_pnl {gross} - commission {commission} + swap {swap} "
                                 f"= {expected:.2f}")
            net = expected if net is None else float(net)
        else:
            net = float(net)
            gross = net + commission - swap
        return cls(symbol=str(data["symbol"]), direction=int(data["direction"]),
                   lot=float(data.get("lot", data.get("volume", 0.0))),
                   entry_time=None if entry in (None, "") else int(entry), exit_time=int(data["exit_time"]),
                   pnl=net, gross_pnl=gross, is_paper=_bool(data.get("is_paper", False)))

    @classmethod
    def from_store_row(cls, row: Mapping[str, Any]) -> TradeRecord | None:
        """From a row of the store's `trades` table (as `oracle report trades` prints it in csv, json or its table:
        `timestamp`, `action`, `volume`, `pnl` net, `commission` a charge, `swap`): a closed trade, or None for an
        opening (`action` OPEN). Its exit time is the row's `timestamp` (ISO-8601 UTC, or Unix seconds)."""
        action = str(row.get("action") or "").upper()
        if action == "OPEN":
            return None
        if action not in CLOSING_ACTIONS:
            raise ValueError(f"action {str(row.get('action'))[:40]!r} is not OPEN, {' or '.join(CLOSING_ACTIONS)}")
        return cls.from_dict({**row, "exit_time": unix_time(row.get("timestamp"), "timestamp"), "entry_time": None,
                              "lot": row.get("volume", 0.0)})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


CLOSING_ACTIONS = ("CLOSE", "PARTIAL_CLOSE")


def unix_time(value: Any, column: str) -> int:
    """Unix seconds from a number or an ISO-8601 text (a trailing Z is UTC; without a zone, UTC)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    text = str(value or "").strip()
    if not text:
        raise ValueError(f"{column} is empty")
    try:
        return int(float(text))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{column} {text[:40]!r} is neither Unix seconds nor an ISO-8601 time") from None
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if data.get(key) not in (None, ""):
            return data[key]
    return None


def _money(value: Any) -> float:
    return 0.0 if value in (None, "") else float(value)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


@dataclass(frozen=True)
class DriftRow:
    symbol: str
    paper_trades: int
    real_trades: int
    paper_pnl: float
    real_pnl: float
    pnl_drift: float  # paper - real (net)
    price_drift: float  # paper gross - real gross
    cost_drift: float  # pnl_drift - price_drift: paper costs - real costs
    paper_gross: float
    real_gross: float
    paper_costs: float  # commission + swap, signed (<= 0 when charged)
    real_costs: float
    pnl_drift_pct: float | None  # drift / |paper pnl| * 100; None when paper pnl is 0
    paper_win_rate: float  # 0..1
    real_win_rate: float
    paper_pnl_per_lot: float | None
    real_pnl_per_lot: float | None
    verdict: str


def _side(trades: list[TradeRecord]) -> tuple[int, float, float, float | None]:
    pnl = sum(t.pnl for t in trades)
    win_rate = sum(t.pnl > 0 for t in trades) / len(trades) if trades else 0.0
    lots = sum(t.lot for t in trades)
    return len(trades), pnl, win_rate, (pnl / lots if lots > 0 else None)


def verdict(real_pnl: float, paper_pnl: float, real_trades: int, paper_trades: int) -> str:
    if real_trades == 0 and paper_trades == 0:
        return "NO_DATA"
    real_ok, paper_ok = real_pnl > 0, paper_pnl > 0
    if real_ok and paper_ok:
        return "HEALTHY"
    if paper_ok:
        return "EXECUTION_DRIFT"
    if real_ok:
        return "INVESTIGATE"
    return "MARKET_DRIFT"


def _row(symbol: str, real: list[TradeRecord], paper: list[TradeRecord]) -> DriftRow:
    n_paper, paper_pnl, paper_wr, paper_per_lot = _side(paper)
    n_real, real_pnl, real_wr, real_per_lot = _side(real)
    paper_gross, real_gross = sum(t.gross_pnl for t in paper), sum(t.gross_pnl for t in real)
    drift = paper_pnl - real_pnl
    price_drift = paper_gross - real_gross
    return DriftRow(
        symbol=symbol, paper_trades=n_paper, real_trades=n_real, paper_pnl=paper_pnl, real_pnl=real_pnl,
        pnl_drift=drift, price_drift=price_drift, cost_drift=drift - price_drift, paper_gross=paper_gross,
        real_gross=real_gross, paper_costs=sum(t.costs for t in paper), real_costs=sum(t.costs for t in real),
        pnl_drift_pct=drift / abs(paper_pnl) * 100 if paper_pnl else None,
        paper_win_rate=paper_wr, real_win_rate=real_wr, paper_pnl_per_lot=paper_per_lot,
        real_pnl_per_lot=real_per_lot, verdict=verdict(real_pnl, paper_pnl, n_real, n_paper))


def drift_table(trades: Iterable[TradeRecord], since: int | None = None, until: int | None = None) -> list[DriftRow]:
    """One row per symbol seen on either side (sorted), then the ALL row. Window on exit time, [since, until)."""
    chosen = [t for t in trades
              if (since is None or t.exit_time >= since) and (until is None or t.exit_time < until)]
    symbols = sorted({t.symbol for t in chosen})
    rows = []
    for symbol in symbols:
        real = [t for t in chosen if t.symbol == symbol and not t.is_paper]
        paper = [t for t in chosen if t.symbol == symbol and t.is_paper]
        rows.append(_row(symbol, real, paper))
    rows.append(_row(ALL, [t for t in chosen if not t.is_paper], [t for t in chosen if t.is_paper]))
    return rows


def _fmt(value: float | None, places: int = 2) -> str:
    return "-" if value is None else f"{value:.{places}f}"


def render_markdown(rows: Iterable[DriftRow]) -> str:
    header = ["symbol", "paper trades", "real trades", "paper pnl", "real pnl", "drift", "price drift",
              "cost drift", "drift %", "paper win %", "real win %", "paper pnl/lot", "real pnl/lot", "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r.symbol, str(r.paper_trades), str(r.real_trades), _fmt(r.paper_pnl), _fmt(r.real_pnl),
                 _fmt(r.pnl_drift), _fmt(r.price_drift), _fmt(r.cost_drift), _fmt(r.pnl_drift_pct, 1),
                 _fmt(r.paper_win_rate * 100, 1),
                 _fmt(r.real_win_rate * 100, 1), _fmt(r.paper_pnl_per_lot), _fmt(r.real_pnl_per_lot), r.verdict]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def equity_curves(trades: Iterable[TradeRecord]) -> dict[tuple[str, bool], list[tuple[int, float]]]:
    """Cumulative net PnL by exit time, per (symbol, is_paper) and for (ALL, is_paper)."""
    curves: dict[tuple[str, bool], list[tuple[int, float]]] = {}
    for trade in sorted(trades, key=lambda t: (t.exit_time, t.symbol)):
        for key in ((trade.symbol, trade.is_paper), (ALL, trade.is_paper)):
            points = curves.setdefault(key, [])
            last = points[-1][1] if points else 0.0
            points.append((trade.exit_time, last + trade.pnl))
    return curves
