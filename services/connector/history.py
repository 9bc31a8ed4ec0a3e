"""The closed bars a history request asks for, fetched on the broker's loop: the last `count`, every bar after
`since` (bounded), or the last `count` before `until`."""

from __future__ import annotations

from common import bus, messages
from services.connector.port import Bar, BrokerPort

MAX_BARS = 50_000


async def closed_bars(broker: BrokerPort, a: messages.HistoryArgs, tf_s: int) -> list[Bar]:
    """The closed bars a history request asks for (runs on the broker's loop)."""

    async def fetch(n: int) -> list[Bar]:
        return await broker.get_history(a.symbol, a.timeframe, n)

    async def bars_after(t: int) -> int:
        # calendar bars since t bound the trading bars since t from above (closed markets only remove bars)
        now = broker.server_time
        if now is None:
            await fetch(1)
            now = broker.server_time or t
        return max(1, int((now - t) // tf_s) + 2)

    if a.since is not None:
        span = await bars_after(a.since)
        if span > MAX_BARS:
            raise bus.OpError("too_many", f"more than {MAX_BARS} bars since {a.since}: ask for a shorter range")
        bars = [b for b in await fetch(min(span, MAX_BARS)) if b.time > a.since]
        if a.until is not None:
            bars = [b for b in bars if b.time < a.until]
        return bars[: a.count] if a.count else bars
    if a.until is not None:
        n = a.count + await bars_after(a.until)
        while True:
            got = await fetch(min(n, MAX_BARS))
            bars = [b for b in got if b.time < a.until]
            if len(bars) >= a.count or len(got) < n or n >= MAX_BARS:
                return bars[-a.count :]
            n *= 2
    return await fetch(a.count)
