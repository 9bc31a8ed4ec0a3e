"""The replay's source data: CSV rows -> bars (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CsvBar:
    time: int  # bar open, Unix s UTC
    open: float
    high: float
    low: float
    close: float
    volume: float  # the CSV's feed volume for source bars; ticks for the bars the simulator serves


def parse_csv(text: str) -> list[CsvBar]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = [h.strip().lower() for h in lines[0].split(",")]
    columns = ("time", "open", "high", "low", "close", "volume")  # volume: the tick counts come from it
    missing = [name for name in columns if name not in header]
    if missing:
        raise ValueError(f"the CSV header lacks {', '.join(missing)}: {lines[0]!r}")
    idx = [header.index(name) for name in columns]
    out = []
    for n, ln in enumerate(lines[1:], start=2):
        f = ln.split(",")
        try:
            t, o, h, lo, c, v = (float(f[i]) for i in idx)
        except (IndexError, ValueError) as exc:
            raise ValueError(f"CSV line {n}: {exc}: {ln!r}") from None
        out.append(CsvBar(int(t), o, h, lo, c, v))
    return out
