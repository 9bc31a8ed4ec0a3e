"""``oracle train``: fit the HMM and train the PPO policy on the twin, then write a v2.0 model zip.

    python -m services.preditor.train --data data/EURUSD_H1_2017.csv --symbol EURUSD --timeframe H1 \\
        --out models/EURUSD_H1.zip [--timesteps N] [--seed N]

Bars are split 70/15/15 in time order: the HMM and the policy learn on the first 70 %, the validation 15 % picks
the best policy among periodic evaluations, and the last 15 % is the out-of-sample backtest written into the
metadata (``backtest_oos``), replayed with the twin's step function. Seeded: the same command on the same machine
and torch thread count writes the same weights.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from common.timeframes import TRADED as TIMEFRAMES
from common.timeframes import bars_per_year
from common.twin.actions import actions_metadata
from common.twin.bars import TIME, BarsCsvError, load_bars_csv
from common.twin.features import HmmFeatureParams, RlFeatureParams, hmm_features
from common.twin.hmm import FORWARD_FILTER, HmmParams
from common.twin.metrics import Metrics
from common.twin.position import CostModel
from common.twin.twin import DEFAULT_WINDOW, TwinSpec
from services.preditor.backtest import DefaultsHelp

REWARD = "delta equity (USD) from before the action at close t to close t+1, / reward_scale"


PROG = "oracle train"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


def _net(text: str) -> str:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of layer sizes, e.g. 256,256")
    return ",".join(parts)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=DefaultsHelp,
        description="Fit the HMM and train the PPO policy on the twin, then write a v2.0 model zip. The defaults "
        "train for about 30 minutes on 2 cores (2 000 000 timesteps); the demo model took --timesteps 450560 (6 min). "
        "Progress goes to stderr; the model's path is printed at the end.")
    p.add_argument("--data", required=True, help="CSV of bars, oldest first: time (bar open, Unix s UTC),open,high,"
                   "low,close[,volume]; split 70/15/15 in time: train, validation, out-of-sample test")
    p.add_argument("--symbol", required=True, help="the symbol the model trades, e.g. EURUSD (in its metadata)")
    p.add_argument("--timeframe", required=True, choices=sorted(TIMEFRAMES), help="the bars' timeframe")
    p.add_argument("--out", required=True, help="model zip to write, e.g. models/EURUSD_H1.zip (its directory is "
                   "made if missing)")
    p.add_argument("--timesteps", type=_positive_int, default=2_000_000, help="PPO training timesteps (the run's "
                   "length: about 1200 per second on a 2-core VM)")
    p.add_argument("--seed", type=int, default=42, help="seed of the HMM, torch and numpy: the same seed, data and "
                   "thread count write the same weights")
    p.add_argument("--net", type=_net, default="256,256,256", help="hidden layer sizes of the actor and of the critic")
    p.add_argument("--n-states", type=_positive_int, default=5, help="HMM regimes")
    p.add_argument("--window", type=_positive_int, default=DEFAULT_WINDOW, help="bars the twin's features look at")
    p.add_argument("--learning-rate", type=float, default=3e-4, help="PPO learning rate")
    p.add_argument("--n-steps", type=_positive_int, default=4096, help="PPO rollout length (steps per update)")
    p.add_argument("--batch-size", type=_positive_int, default=512, help="PPO minibatch size")
    p.add_argument("--n-epochs", type=_positive_int, default=10, help="PPO epochs per update")
    p.add_argument("--gamma", type=float, default=0.99, help="PPO discount factor")
    p.add_argument("--episode-bars", type=_positive_int, default=2048, help="bars per training episode")
    p.add_argument("--reward-scale", type=float, default=10.0, help="reward = equity change (USD) / this")
    p.add_argument("--hmm-iter", type=_positive_int, default=100, help="HMM EM iterations")
    p.add_argument("--evals", type=int, default=10, help="validation evaluations for model selection (0: keep the "
                   "final policy)")
    p.add_argument("--progress-every", type=int, default=0, help="timesteps between progress lines (0: --n-steps)")
    p.add_argument("--threads", type=_positive_int, default=1, help="torch threads (the results depend on it)")
    p.add_argument("--spread-points", type=float, default=7.0, help="cost model: spread, in points")
    p.add_argument("--slippage-points", type=float, default=2.0, help="cost model: slippage, in points")
    p.add_argument("--commission-per-lot", type=float, default=7.0, help="cost model: commission per lot round trip "
                   "(USD)")
    p.add_argument("--digits", type=_positive_int, default=5, help="price digits (a point is 10^-digits)")
    p.add_argument("--pip-value", type=float, default=10.0, help="USD per pip per lot (training approximation)")
    p.add_argument("--initial-balance", type=float, default=10_000.0, help="the twin's starting balance (USD)")
    return p


def split_sizes(n: int) -> tuple[int, int, int]:
    train = n * 70 // 100  # integer maths: int(1400 * 0.70) is 979
    val = n * 15 // 100
    return train, val, n - train - val


def fit_hmm(bars: np.ndarray, n_train: int, p: HmmFeatureParams, n_states: int, seed: int,
            n_iter: int) -> HmmParams:
    from hmmlearn.hmm import GaussianHMM

    from services.preditor.model_file import hmm_params_from_hmmlearn

    rows = np.arange(p.first_full_row, n_train)
    x = hmm_features(bars, rows, np.zeros_like(rows), p)
    model = GaussianHMM(n_components=n_states, covariance_type="full", n_iter=n_iter, random_state=seed)
    model.fit(x)
    # Through JSON and back: training decodes with exactly the numbers the model file will hold.
    return HmmParams.from_dict(json.loads(json.dumps(hmm_params_from_hmmlearn(model).to_dict())))


def _day(t: float) -> str:
    return dt.datetime.fromtimestamp(int(t), dt.UTC).strftime("%Y-%m-%d")


def _progress(msg: str) -> None:
    print(f"[train] {msg}", file=sys.stderr, flush=True)


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    try:
        bars = load_bars_csv(args.data)
    except FileNotFoundError:
        return _fail(f"--data {args.data}: no such file")
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"--data {args.data}: cannot read: {exc}")
    except BarsCsvError as exc:
        return _fail(f"--data {args.data}: {exc}")
    out = Path(args.out).resolve()
    if out.suffix != ".zip":
        return _fail(f"--out {args.out}: a model file ends in .zip")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail(f"--out {args.out}: cannot make its directory: {exc.strerror}")
    if not os.access(out.parent, os.W_OK):
        return _fail(f"--out {args.out}: its directory {out.parent} is not writable")
    _progress(f"{len(bars)} bars read from {args.data}; training {args.timesteps} timesteps, the model goes to {out}")

    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from torch import nn

    from services.preditor.backtest import backtest_metrics
    from services.preditor.env import TwinEnv, market_tape
    from services.preditor.model_file import write_model
    from services.preditor.policy import PolicyNet, actor_state_from_sb3

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    n_train, n_val, n_test = split_sizes(len(bars))
    if n_train <= args.window + 1 or n_val < 2 or n_test < 2:
        return _fail(f"--data {args.data}: {len(bars)} bars are not enough for a {args.window}-bar window and a "
                     "70/15/15 split")
    hmm_p, rl_p = HmmFeatureParams(), RlFeatureParams()
    costs = CostModel(10.0 ** -args.digits, args.pip_value, args.spread_points, args.slippage_points,
                      args.commission_per_lot, args.digits, args.initial_balance)
    _progress(f"fitting the HMM ({args.n_states} states, {args.hmm_iter} iterations) on {n_train} bars")
    hmm = fit_hmm(bars, n_train, hmm_p, args.n_states, args.seed, args.hmm_iter)
    spec = TwinSpec(hmm, FORWARD_FILTER, hmm_p, rl_p, costs, args.window)
    tape = market_tape(spec, bars)  # row j = bar window-1+j
    first = args.window - 1
    train_tape = tape.slice(0, n_train - first)
    val_tape = tape.slice(n_train - first, n_train + n_val - first)
    _progress(f"{len(bars)} bars: train {n_train}, validation {n_val}, test {n_test}; HMM fitted "
              f"({args.n_states} states); {len(train_tape)} training decisions")

    net = [int(x) for x in args.net.split(",") if x]
    env = TwinEnv(spec, train_tape, args.episode_bars, args.reward_scale)
    ppo = PPO("MlpPolicy", env, learning_rate=args.learning_rate, n_steps=args.n_steps,
              batch_size=args.batch_size, n_epochs=args.n_epochs, gamma=args.gamma, seed=args.seed,
              device="cpu", verbose=0,
              policy_kwargs={"net_arch": {"pi": net, "vf": net}, "activation_fn": nn.Tanh})

    def validation_pnl(state: dict[str, torch.Tensor]) -> float:
        policy = PolicyNet.from_state_dict(state)
        venv = TwinEnv(spec, val_tape, None, args.reward_scale)
        obs, _ = venv.reset()
        done = False
        while not done:
            obs, _, _, done, _ = venv.step(policy.act(obs))
        return venv.equity_change

    eval_every = max(args.timesteps // max(args.evals, 1), 1)
    progress_every = args.progress_every or args.n_steps
    best: dict[str, object] = {"pnl": -math.inf, "state": None, "at": 0}
    evaluations: list[tuple[int, float]] = []

    class Progress(BaseCallback):
        def _on_step(self) -> bool:
            n = self.num_timesteps
            if args.evals and n % eval_every == 0:
                state = actor_state_from_sb3(self.model.policy.state_dict())
                pnl = validation_pnl(state)
                evaluations.append((n, round(pnl, 2)))
                if pnl > best["pnl"]:
                    best.update(pnl=pnl, state=state, at=n)
            if n % progress_every == 0 or n == args.timesteps:
                spent = time.monotonic() - started
                rate = n / spent if spent > 0 else 0.0
                eta = (args.timesteps - n) / rate if rate > 0 else 0.0
                last = f", validation PnL {evaluations[-1][1]:+.2f} USD" if evaluations else ""
                _progress(f"{n}/{args.timesteps} steps ({100 * n / args.timesteps:.0f} %), {rate:.0f} steps/s, "
                          f"ETA {eta / 60:.1f} min{last}")
            return True

    ppo.learn(total_timesteps=args.timesteps, callback=Progress())
    final = actor_state_from_sb3(ppo.policy.state_dict())
    final_pnl = validation_pnl(final)
    if final_pnl > best["pnl"] or best["state"] is None:
        best.update(pnl=final_pnl, state=final, at=args.timesteps)
    policy_state = best["state"]
    policy = PolicyNet.from_state_dict(policy_state)

    oos_bars = bars[n_train + n_val - first:]
    oos: Metrics = backtest_metrics(spec, policy.act, oos_bars, args.timeframe)
    hmm_rows = np.arange(hmm_p.first_full_row, n_train)
    train_states = tape.states[: n_train - first]
    metadata = {
        "format_version": "2.0",
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "symbol": {"name": args.symbol, "clean": args.symbol, "timeframe": args.timeframe},
        "training_config": {
            "point": costs.point, "pip_value": costs.pip_value, "spread_points": costs.spread_points,
            "slippage_points": costs.slippage_points, "commission_per_lot": costs.commission_per_lot,
            "digits": costs.digits, "initial_balance": costs.initial_balance, "lot_sizes": list(costs.lot_sizes),
            "total_timesteps": args.timesteps, "seed": args.seed, "torch_threads": args.threads,
            "reward": REWARD, "reward_scale": args.reward_scale, "episode_bars": args.episode_bars,
            "split": [0.70, 0.15, 0.15],
            "model_selection": "best validation PnL (greedy twin replay) among periodic evaluations",
            "selected_at_timesteps": best["at"], "validation_pnl": round(float(best["pnl"]), 4),
            "evaluations": evaluations,
            "pip_value_note": "fixed 10 USD/lot/pip approximation for training only; never for real money",
            "commission_note": "half at the open, half at the close; trade pnl is net of both halves",
        },
        "hmm_config": {
            "n_states": args.n_states, "momentum_period": hmm_p.momentum_period,
            "consistency_period": hmm_p.consistency_period, "range_period": hmm_p.range_period,
            "decode_method": FORWARD_FILTER, "covariance_type": "full", "n_iter": args.hmm_iter,
            "fit_rows": int(len(hmm_rows)), "library": "hmmlearn 0.3.3 GaussianHMM",
        },
        "rl_config": {
            "roc_period": rl_p.roc_period, "atr_period": rl_p.atr_period, "ema_period": rl_p.ema_period,
            "range_period": rl_p.range_period, "volume_ma_period": rl_p.volume_ma_period,
            "observation_size": spec.observation_size, "activation": "tanh",
            "net_arch": {"pi": net, "vf": net}, "algorithm": "PPO (stable-baselines3)",
            "learning_rate": args.learning_rate, "n_steps": args.n_steps, "batch_size": args.batch_size,
            "n_epochs": args.n_epochs, "gamma": args.gamma,
        },
        "twin": {
            "window": args.window,
            "features": "each bar's features are a pure function of the window's bars ending at it",
            "ema_seed": "first close of the window (same in training and live)",
            "position_timing": "observation at bar t holds the position after bar t-1, PnL marked at close t-1",
        },
        "actions": actions_metadata(),
        "backtest_oos": oos.to_dict(),
        "hmm_state_analysis": {"state_distribution": {
            str(k): {"pct": round(100.0 * float(np.mean(train_states == k)), 2)} for k in range(args.n_states)}},
        "data_info": {
            "source": Path(args.data).name, "total_bars": len(bars), "train_bars": n_train, "val_bars": n_val,
            "test_bars": n_test, "date_start": _day(bars[0, TIME]), "date_end": _day(bars[-1, TIME]),
            "bars_per_year": bars_per_year(args.timeframe),
        },
    }
    write_model(out, metadata, hmm, policy_state)
    spent = time.monotonic() - started
    _progress(f"done in {spent / 60:.1f} min; OOS: {oos.total_trades} trades, "
              f"PnL {oos.total_pnl:+.2f} USD, Sharpe {oos.sharpe_ratio:.2f}, max DD {oos.max_drawdown_pct:.2f} %")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
