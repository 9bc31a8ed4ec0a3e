"""Past the connector everything speaks lots, prices, price distances and account money: no cTrader unit may come
back into the executor or the paper trader (protocol volumes in cents of a unit, `lotSize` & co., relative stops in
1/100000 of a price, money scaled by moneyDigits)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PACKAGES = (REPO / "services" / "executor", REPO / "services" / "paper")
# the one exception: reading what a version-1 executor wrote ahead before it died (its docstring says so)
LEGACY = {REPO / "services" / "executor" / "state_v1.py"}

FORBIDDEN = {
    "protocol volume field": re.compile(r"volume_wire|volume_cents|\b(min|step|max)_?[vV]olume\b"),
    "cTrader lotSize": re.compile(r"\blotSize\b"),
    "cents of a unit": re.compile(r"\bcents?\s+of\s+(an?\s+)?units?\b|\bunit\s+cents\b", re.IGNORECASE),
    "price scale constant": re.compile(r"\b(PRICE|VOLUME)_SCALE\b"),
    "1/100000 price scaling": re.compile(r"(?<![\w.])(100_?000|1e[+]?5|1e-5|10\s*\*\*\s*5|0\.00001)(?![\w.])"),
    "relative stop": re.compile(r"relative_?(stop_?loss|take_?profit)|relative(StopLoss|TakeProfit)", re.IGNORECASE),
    "moneyDigits": re.compile(r"money_?digits", re.IGNORECASE),
}


def sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in package.rglob("*.py"))


def offences(text: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for what, pattern in FORBIDDEN.items():
            match = pattern.search(line)
            if match:
                found.append(f"{number}: {what} ({match.group(0)!r}): {line.strip()}")
    return found


@pytest.mark.parametrize("path", [p for p in sources() if p not in LEGACY], ids=lambda p: str(p.relative_to(REPO)))
def test_no_broker_units(path):
    assert offences(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("line", [
    "volume = row['volume_wire']",
    "VolumeLimits(lot_size, min_volume, step_volume, max_volume)",
    "spec.lotSize",
    "lots * 10_000_000 cents of a unit",
    "volume in cents of units",
    "from services.executor.sltp import PRICE_SCALE",
    "sl = distance * 100000",
    "sl = round(distance * 1e5)",
    "point = 10 ** 5",
    "relative_stop_loss=stops.sl.relative",
    "req.relativeTakeProfit = x",
    "balance / 10 ** money_digits",
])
def test_the_guard_sees_them(line):
    assert offences(line)


@pytest.mark.parametrize("line", [
    "contract_size: float  # units of the base asset in one lot (100 000 on forex)",
    "lot_sizes=tuple(float(v) for v in tc.get('lot_sizes', TRAINING_LOT_SIZES))",
    "percent = 12.5",
    "pnl within 0.01 (rounding to cents)",
    "relative 1e-12",
    "step_lots=0.01",
])
def test_the_guard_lets_lots_and_prices_be(line):
    assert offences(line) == []


def test_the_legacy_reader_is_the_only_exception_and_says_so():
    for path in LEGACY:
        text = path.read_text(encoding="utf-8")
        assert offences(text), f"{path} no longer needs its exception: remove it from LEGACY"
        assert "only module of the executor that knows the old cTrader units" in text
    imports = re.compile(r"^(from|import) .*\bstate_v1\b", re.MULTILINE)
    users = [p for p in sources() if imports.search(p.read_text(encoding="utf-8")) and p not in LEGACY]
    assert sorted(p.name for p in users) == ["replay.py"]  # only to replay what a version-1 process wrote
