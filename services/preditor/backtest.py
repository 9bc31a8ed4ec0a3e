"""``oracle backtest``: replay a model's twin over a CSV of bars with the same step function as the preditor.

    oracle backtest --model models/EURUSD_H1.zip --data data/EURUSD_H1_2017.csv [--out-dir backtest_out] [--trusted]

Writes ``<SYMBOL>_<TF>_trades.csv``, ``<SYMBOL>_<TF>_decisions.csv`` (one row per bar: the actions the preditor
must reproduce) and ``<SYMBOL>_<TF>_equity.png`` into ``--out-dir`` (default ``backtest_out`` in the current
directory, made if missing), prints the metrics and the files' full paths, and its progress on stderr. The first
``window - 1`` bars only fill the window. A missing or unreadable file, a wrong header or a bad value is one line
naming the file, the row, the column and the value (exit code 2).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from common.timeframes import bars_per_year
from common.twin.bars import BarsCsvError, load_bars_csv
from common.twin.metrics import Metrics, compute_metrics
from common.twin.position import Trade
from common.twin.twin import Decision, Policy, TwinSpec, TwinState, initial_state, run

PROGRESS_STEPS = 10  # progress lines over a replay


def replay(model, bars: np.ndarray, state: TwinState | None = None,
           progress: Callable[[int, int], None] | None = None) -> list[Decision]:
    """The decisions of ``model`` (a LoadedModel) over ``bars``, from a fresh twin (or from ``state``); ``progress``
    is told (bars done, bars) every tenth of the way (the twin's state carries over: the same decisions)."""
    state = state or initial_state(model.model_id)
    if progress is None:
        return run(model.spec, state, bars, model.policy_fn)[1]
    decisions: list[Decision] = []
    chunk = max(1, -(-len(bars) // PROGRESS_STEPS))
    for start in range(0, len(bars), chunk):
        state, done = run(model.spec, state, bars[start:start + chunk], model.policy_fn)
        decisions += done
        progress(min(start + chunk, len(bars)), len(bars))
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


PROG = "oracle backtest"


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, except where there is none (a required option, a flag)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default in (None, False, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0].strip("`").split(": ", 1)[-1],
                                formatter_class=DefaultsHelp)
    p.add_argument("--model", required=True, help="model zip to replay (as `oracle train` writes it)")
    p.add_argument("--data", required=True, help="CSV of bars, oldest first: time (bar open, Unix s UTC),open,high,"
                   "low,close[,volume]")
    p.add_argument("--out-dir", default="backtest_out", help="where the trades, decisions and equity PNG go (made "
                   "if missing; relative to the current directory)")
    p.add_argument("--trusted", action="store_true", help="allow a legacy pickle model (runs code from it)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()

    def say(message: str) -> None:
        if not args.quiet:
            print(f"[backtest] {message}", file=sys.stderr, flush=True)

    try:
        bars = load_bars_csv(args.data)
    except FileNotFoundError:
        return _fail(f"--data {args.data}: no such file")
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"--data {args.data}: cannot read: {exc}")
    except BarsCsvError as exc:
        return _fail(f"--data {args.data}: {exc}")
    say(f"{len(bars)} bars read from {args.data}; loading the model")

    import torch

    from services.preditor.model_file import ModelFileError, load_model

    torch.set_num_threads(1)  # the preditor's setting too: identical float results
    try:
        model = load_model(args.model, trusted=args.trusted)
    except ModelFileError as exc:
        return _fail(f"--model: model refused: {exc}")
    decisions = replay(model, bars, progress=lambda done, total: say(
        f"{done}/{total} bars ({100 * done // total} %), {time.monotonic() - started:.1f} s"))
    if not decisions:
        return _fail(f"--data {args.data}: {len(bars)} bars, fewer than the model's {model.spec.window}-bar window: "
                     "nothing to replay")
    m = metrics_of(decisions, model.spec, model.timeframe)
    out = Path(args.out_dir).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail(f"--out-dir {args.out_dir}: cannot make it: {exc.strerror}")
    stem = f"{model.symbol}_{model.timeframe}"
    files = [out / f"{stem}_trades.csv", out / f"{stem}_decisions.csv", out / f"{stem}_equity.png"]
    write_trades_csv(files[0], trades_of(decisions))
    write_decisions_csv(files[1], decisions)
    plot_equity(files[2], decisions, model.spec.costs.initial_balance, f"{stem} backtest on {Path(args.data).name}")
    print(f"{stem} on {Path(args.data).name} ({len(bars)} bars)")
    print(format_metrics(m))
    print("wrote:")
    for f in files:
        print(f"  {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
