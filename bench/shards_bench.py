"""Preditor shards: per-bar latency with N models in 1 process against the same models in 2 shards.

    .venv/bin/python bench/shards_bench.py [--models 20] [--bars 100] [--pause-ms 50]

Each run is a throwaway ORACLE_HOME with the protocol-level stand-in connector of tests/system/preditor_rig.py
(each symbol its own prices, as tests/system/test_preditor_shards.py) and the real preditor process(es): the single
``preditor`` (``preditor.shards: 1``), then ``preditor-0`` and ``preditor-1`` (``preditor.shards: 2``). Per bar time
one bar per symbol is published at once; "per bar" is until the last of the N signals reached the bench's SUB (both
shards' signals on one SUB, as the executor hears them). ``--pause-ms`` between bar times lets the processes write
their snapshots, as the hour between two H1 closes does. Printed: p50 / p95 / max per bar and the ratio. On a
machine whose cores are busy with other work the shards cannot run side by side and the ratio says little.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "tests"))

from harness import Home  # noqa: E402
from system.preditor_rig import SignalTap, StandInConnector, copy_model_as, start_preditor  # noqa: E402

from common.twin.bars import load_bars_csv  # noqa: E402

CSV = REPO / "data" / "EURUSD_H1_2017.csv"
MODEL = REPO / "models" / "EURUSD_H1.zip"
HISTORY = 1000
OFFSET = 24


def symbol_bars(symbols: list[str], end: int) -> dict:
    source = load_bars_csv(CSV)
    out = {}
    for k, sym in enumerate(symbols):
        rows = source[:end].copy()
        rows[:, 1:] = source[k * OFFSET:k * OFFSET + end, 1:]
        out[sym] = rows
    return out


def run(shards: int, symbols: list[str], bars: int, pause_s: float) -> list[float]:
    root = Path(tempfile.mkdtemp(prefix=f"shbench{shards}-"))
    try:
        models = root / "models-in"
        models.mkdir()
        for sym in symbols:
            copy_model_as(MODEL, models, sym)
        home = Home(root / "home", {"preditor": {"warmup_bars": HISTORY, "models_dir": str(models), "shards": shards},
                                    "connector": {"symbols": dict.fromkeys(symbols, "H1")}})
        (home.root / "var" / "run").mkdir(parents=True, exist_ok=True)
        cfg = home.config()
        programs = cfg.of_kind("preditor")
        conn = StandInConnector(cfg, symbol_bars(symbols, HISTORY + bars), dict.fromkeys(symbols, "H1"),
                                cursor=HISTORY)
        tap = SignalTap(cfg, programs=programs)
        try:
            for program in programs:
                start_preditor(home, program)
            took = []
            for i in range(HISTORY, HISTORY + bars):
                t = int(conn.times[i])
                t0 = time.perf_counter()
                conn.publish(i)
                for sym in symbols:
                    tap.wait_for(sym, t, timeout=30)
                took.append(max(tap.arrived[(s, t)] for s in symbols) - t0)
                time.sleep(pause_s)
            return took
        finally:
            tap.close()
            conn.close()
            home.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=int, default=20)
    p.add_argument("--bars", type=int, default=100)
    p.add_argument("--pause-ms", type=float, default=50.0)
    args = p.parse_args()
    symbols = ["EURUSD", *(f"SYN{k:02d}" for k in range(1, args.models))]
    rows = {}
    for shards in (1, 2):
        took = sorted(1000 * x for x in run(shards, symbols, args.bars, args.pause_ms / 1000))
        rows[shards] = (statistics.median(took), took[int(0.95 * (len(took) - 1))], took[-1])
        print(f"{args.models} models in {shards} process(es): bar -> last signal p50 {rows[shards][0]:.2f} ms, "
              f"p95 {rows[shards][1]:.2f} ms, max {rows[shards][2]:.2f} ms ({args.bars} bars)", flush=True)
    print(f"2 shards / 1 process: p50 {rows[2][0] / rows[1][0]:.2f}x, p95 {rows[2][1] / rows[1][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
