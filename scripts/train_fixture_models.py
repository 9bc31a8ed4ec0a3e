"""Regenerate the test fixture models (tests/fixtures/models/): M15 models for EURUSD, GBPUSD, USDJPY, XAUUSD and
EURGBP, and an H4 model for EURUSD, each trained by the project's trainer on exactly the bars the simulator serves
for that symbol and timeframe.

    .venv/bin/python scripts/train_fixture_models.py [--only EURUSD_M15 ...] [--out-dir tests/fixtures/models]

There is no real M15 or H4 data: the bars are the simulator's (services/connector/sim/series.py `served_bars`),
derived from the bundled H1 CSV (minute points per H1 bar, every timeframe aggregated from them; every symbol but
EURUSD a scaled and shifted copy of the CSV). Each symbol's bars are exported to a CSV in a scratch directory, then
`python -m services.preditor.train` runs on it with fixed seeds and small settings (a 64x64 network, a few
thousand timesteps): pipeline fixtures that load, decide and change position often, not trading edges.
Seeded: the same command on the same machine writes the same HMM and policy members (only the metadata's
`generated_at` differs).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from services.connector.sim import catalog  # noqa: E402
from services.connector.sim.replay import CsvBar, parse_csv  # noqa: E402
from services.connector.sim.series import served_bars  # noqa: E402

CSV = REPO / "data" / "EURUSD_H1_2017.csv"
OUT_DIR = REPO / "tests" / "fixtures" / "models"
SEED = 7
TIMESTEPS = 8192
TRAIN_ARGS = ("--net", "64,64", "--n-steps", "2048", "--batch-size", "256", "--n-epochs", "4", "--evals", "4",
              "--hmm-iter", "50", "--episode-bars", "1024")


@dataclass(frozen=True)
class Fixture:
    symbol: str
    timeframe: str
    pip_value: float  # USD per lot per pip, the training cost model's approximation

    @property
    def name(self) -> str:
        return f"{self.symbol}_{self.timeframe}"


FIXTURES = (
    Fixture("EURUSD", "M15", 10.0),
    Fixture("GBPUSD", "M15", 10.0),
    Fixture("USDJPY", "M15", 8.5),  # 1000 JPY per pip and lot at about 117 JPY per USD
    Fixture("XAUUSD", "M15", 10.0),  # 100 oz per lot, a pip of 0.1 USD
    Fixture("EURGBP", "M15", 13.0),  # 10 GBP per pip and lot at about 1.3 USD per GBP
    Fixture("EURUSD", "H4", 10.0),
)


def source_bars() -> list[CsvBar]:
    return parse_csv(CSV.read_text())


def export(fixture: Fixture, source: list[CsvBar], path: Path) -> tuple[int, int, int]:
    """Write the bars the simulator serves for the fixture's symbol and timeframe over the whole CSV; (count,
    first bar time, last bar time)."""
    symbol = catalog.CATALOG[fixture.symbol]
    bars = served_bars(source, symbol, fixture.timeframe, source[0].time, source[-1].time + 3600)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["time", "open", "high", "low", "close", "volume"])
        for b in bars:
            w.writerow([b.time, repr(b.open), repr(b.high), repr(b.low), repr(b.close), repr(float(b.volume))])
    return len(bars), bars[0].time, bars[-1].time


def train(fixture: Fixture, data: Path, out: Path) -> None:
    spec = catalog.CATALOG[fixture.symbol]
    cmd = [sys.executable, "-m", "services.preditor.train", "--data", str(data), "--symbol", fixture.symbol,
           "--timeframe", fixture.timeframe, "--out", str(out), "--timesteps", str(TIMESTEPS), "--seed", str(SEED),
           "--digits", str(spec.spec.digits), "--spread-points", str(spec.spread_points),
           "--pip-value", str(fixture.pip_value), *TRAIN_ARGS]
    subprocess.run(cmd, cwd=REPO, check=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", default=[], help="fixture names (EURUSD_M15 ...); default: all")
    p.add_argument("--out-dir", default=str(OUT_DIR))
    args = p.parse_args(argv)
    chosen = [f for f in FIXTURES if not args.only or f.name in args.only]
    unknown = set(args.only) - {f.name for f in FIXTURES}
    if unknown:
        print(f"unknown fixtures: {sorted(unknown)}; known: {[f.name for f in FIXTURES]}", file=sys.stderr)
        return 2
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    source = source_bars()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fixture-bars-") as scratch:
        for k, fixture in enumerate(chosen, 1):
            data = Path(scratch) / f"{fixture.name}.csv"
            count, first, last = export(fixture, source, data)
            print(f"[{k}/{len(chosen)}] {fixture.name}: {count} served bars {first}..{last}, training "
                  f"({TIMESTEPS} timesteps, seed {SEED})", flush=True)
            out = out_dir / f"{fixture.name}.zip"
            train(fixture, data, out)
            print(f"[{k}/{len(chosen)}] {fixture.name}: wrote {out} ({out.stat().st_size} bytes), "
                  f"{time.monotonic() - started:.0f} s so far", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
