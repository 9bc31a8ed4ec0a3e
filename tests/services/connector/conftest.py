from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.connector.sim.catalog import CATALOG
from services.connector.sim.replay import CsvBar, parse_csv
from services.connector.sim.series import served_bars
from services.connector.sim.server import SimConfig, SimServer, SimThread

REPO_CSV = Path(__file__).resolve().parents[3] / "data" / "EURUSD_H1_2017.csv"
SHARED_CSV = Path("/work/shared/data/EURUSD_H1_2017.csv")


@pytest.fixture(scope="session")
def csv_path() -> str:
    for path in (REPO_CSV, SHARED_CSV):
        if path.exists():
            return str(path)
    pytest.skip("EURUSD_H1_2017.csv not found")


@pytest.fixture(scope="session")
def csv_bars(csv_path: str) -> list[CsvBar]:
    return parse_csv(Path(csv_path).read_text())


@pytest.fixture(scope="session")
def eurusd_h1(csv_bars: list[CsvBar]) -> list[CsvBar]:
    """The simulator's EURUSD H1 bars (volume in ticks): one per CSV bar, same index."""
    bars = served_bars(csv_bars, CATALOG["EURUSD"], "H1", csv_bars[0].time, csv_bars[-1].time + 3600)
    assert [b.time for b in bars] == [c.time for c in csv_bars]
    return bars


@pytest.fixture
def sim_factory(csv_bars: list[CsvBar]) -> Iterator[Callable[..., SimThread]]:
    sims: list[SimThread] = []

    def make(**kw: Any) -> SimThread:
        kw.setdefault("speed", 0)
        cfg = SimConfig(host="127.0.0.1", port=kw.pop("port", 0), control_port=0, **kw)
        sim = SimThread(SimServer(cfg, bars=csv_bars)).start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        sim.stop()
