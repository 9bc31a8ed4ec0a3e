"""``oracle backtest``: replay a model's twin over a CSV of bars with the same step function as the preditor.

    python -m services.preditor.backtest --model models/EURUSD_H1.zip --data data/EURUSD_H1_2017.csv \\
        [--out-dir backtest_out] [--trusted]

Writes ``<SYMBOL>_<TF>_trades.csv``, ``<SYMBOL>_<TF>_decisions.csv`` (one row per bar: the actions the preditor
must reproduce) and ``<SYMBOL>_<TF>_equity.png``, and prints the metrics. The first ``window - 1`` bars only fill
the window.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from common.timeframes import bars_per_year
from common.twin.bars import load_bars_csv
from common.twin.metrics import Metrics, compute_metrics
from common.twin.position import Trade
from common.twin.twin import Decision, Policy, TwinSpec, TwinState, initial_state, run


def replay(model, bars: np.ndarray, state: TwinState | None = None) -> list[Decision]:
    """The decisions of ``model`` (a LoadedModel) over ``bars``, from a fresh twin (or from ``state``)."""
    _, decisions = run(model.spec, state or initial_state(model.model_id), bars, model.policy_fn)
    return decisions


def trades_of(decisions: Sequence[Decision]) -> list[Trade]:
    return [d.closed_trade for d in decisions if d.closed_trade is not None]


def equity_curve(decisions: Sequence[Decision], initial_balance: float) -> list[float]:
    return [initial_balance] + [d.equity for d in decisions]


def metrics_of(decisions: Sequence[Decision], spec: TwinSpec, timeframe: str) -> Metrics:
    return compute_metrics(trades_of(decisions), equity_curve(decisions, spec.costs.initial_balance),
                           bars_per_year(timeframe))


def backtest_metrics(spec: TwinSpec, policy: Policy, bars: np.ndarray, timeframe: str) -> Metrics:
    _, decisions = run(spec, initial_state(), bars, policy)
    return metrics_of(decisions, spec, timeframe)


def format_metrics(m: Metrics) -> str:
    pf = "n/a (no losing trade)" if m.profit_factor is None else f"{m.profit_factor:.3f}"
    return "\n".join([
        f"bars decided    {m.bars}",
        f"trades          {m.total_trades} (long {m.long_trades}, short {m.short_trades})",
        f"win rate        {100 * m.win_rate:.1f} % (long {100 * m.long_win_rate:.1f} %, "
        f"short {100 * m.short_win_rate:.1f} %)",
        f"profit factor   {pf}",
        f"PnL             {m.total_pnl:+.2f} USD ({m.total_pips:+.1f} pips); final equity {m.final_equity:.2f}",
        f"max drawdown    {m.max_drawdown_pct:.2f} %",
        f"Sharpe          {m.sharpe_ratio:.3f} (per-bar returns, annualised)",
        f"Sortino         {m.sortino_ratio:.3f}",
        f"Calmar          {m.calmar_ratio:.3f}",
    ])


def write_trades_csv(path: Path, trades: Sequence[Trade]) -> None:
    fields = list(Trade.__dataclass_fields__)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for t in trades:
            w.writerow(asdict(t))


def write_decisions_csv(path: Path, decisions: Sequence[Decision]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["bar_time", "close", "action", "direction", "intensity", "hmm_state", "floating_pnl",
                    "realized_pnl", "equity"])
        for d in decisions:
            w.writerow([d.bar_time, repr(d.close), d.action.name, d.direction, d.intensity, d.hmm_state,
                        repr(d.floating_pnl), repr(d.realized_pnl), repr(d.equity)])


def plot_equity(path: Path, decisions: Sequence[Decision], initial_balance: float, title: str) -> None:
    import datetime as dt

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    times = [dt.datetime.fromtimestamp(d.bar_time, dt.UTC) for d in decisions]
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(times, [d.equity for d in decisions], linewidth=1)
    ax.axhline(initial_balance, color="grey", linewidth=0.5)
    ax.set_title(title)
    ax.set_ylabel("equity (USD)")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="oracle backtest", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out-dir", default="backtest_out")
    p.add_argument("--trusted", action="store_true", help="allow a legacy pickle model (runs code from it)")
    args = p.parse_args(argv)

    import torch

    from services.preditor.model_file import ModelFileError, load_model

    torch.set_num_threads(1)  # the preditor's setting too: identical float results
    try:
        model = load_model(args.model, trusted=args.trusted)
    except ModelFileError as exc:
        print(f"model refused: {exc}", file=sys.stderr)
        return 2
    bars = load_bars_csv(args.data)
    decisions = replay(model, bars)
    if not decisions:
        print(f"{len(bars)} bars: fewer than the {model.spec.window}-bar window, nothing to replay",
              file=sys.stderr)
        return 2
    m = metrics_of(decisions, model.spec, model.timeframe)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{model.symbol}_{model.timeframe}"
    write_trades_csv(out / f"{stem}_trades.csv", trades_of(decisions))
    write_decisions_csv(out / f"{stem}_decisions.csv", decisions)
    plot_equity(out / f"{stem}_equity.png", decisions, model.spec.costs.initial_balance,
                f"{stem} backtest on {Path(args.data).name}")
    print(f"{stem} on {Path(args.data).name} ({len(bars)} bars)")
    print(format_metrics(m))
    print(f"wrote {out / (stem + '_trades.csv')}, {out / (stem + '_decisions.csv')}, {out / (stem + '_equity.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
