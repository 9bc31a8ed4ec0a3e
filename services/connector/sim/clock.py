"""The simulator's replay clock: instants processed on request (`advance`, `advance_bars`, `advance_until`, from
the control port) or timed (`speed` simulated seconds per wall second), each one's stops, spot events, token
expiries, swaps and state saves; a closed stretch is crossed quickly. What an advance sends goes out coalesced,
bar by bar (`_coalesced`).

A mixin of SimServer (server.py): it uses the server's market cursor, sessions, config and `_send`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from services.connector.ctrader import periods as timeframes
from services.connector.sim.market import Instant, spot_due

log = logging.getLogger(__name__)


class ReplayClock:
    # while an advance runs (synchronously: no request is handled meanwhile, so no subscription changes), each
    # session's live trendbar periods per symbol, made once (by id: a Session is not hashable); None: made per instant
    _burst_periods: dict[int, dict[int, list[int]]] | None = None

    @contextlib.contextmanager
    def _burst(self) -> Iterator[None]:
        """An advance: what it sends goes out coalesced (`_coalesced`), the sessions' periods made once."""
        outer = self._burst_periods is not None
        if not outer:
            self._burst_periods = {}
        try:
            with self._coalesced():
                yield
        finally:
            if not outer:
                self._burst_periods = None

    def advance(self, ticks: int = 1) -> int:
        """Process the next `ticks` instants now; returns how many were processed (fewer at the end of the data)."""
        done = 0
        with self._burst():
            while done < ticks and self._step():
                done += 1
        return done

    def advance_bars(self, bars: int = 1) -> int:
        """Advance to the first instant of the bar (configured timeframe) `bars` ahead: the bars before close.
        Returns the number of instants processed. The target is found a bar at a time, as the clock gets there
        (the same instants as `bar_target(bars)` up front, but a burst's first bars go out without waiting for the
        look-ahead over all of them)."""
        done = 0
        with self._burst():
            for _ in range(bars):
                target = self.market.bar_target(1)
                if target is None:  # the data ends first: to its last point
                    while self._step():
                        done += 1
                    break
                done += self.advance_until(target)
        return done

    def advance_until(self, t: int) -> int:
        """Process every instant up to time `t` and set the clock to `t` (within the data)."""
        if t < self.market.now:
            raise ValueError(f"until {t} is before the server time {self.market.now}")
        done = 0
        with self._burst():
            while (nxt := self.market.next_time()) is not None and nxt <= t:
                self._step()
                done += 1
            if t > self.market.now:
                self.market.advance_clock(t)
                self._after_clock()
        return done

    def _step(self) -> bool:
        if self.account.positions:  # their stops are looked at on every point of their symbols
            self.market.price(p.symbol_id for p in self.account.positions.values())
        inst = self.market.step()
        if inst is None:
            return False
        self._on_instant(inst)
        self._after_clock()
        return True

    def _after_clock(self) -> None:
        self.check_token_expiry()
        self._swaps_until(self.market.now)
        if self.market.bar_time != self._saved_bucket:  # the state file follows the clock bar by bar
            self._saved_bucket = self.market.bar_time
            self._save_state()
            if self._coalescing:  # a burst: what each bar's instants sent goes out as the next bar starts
                self._flush()

    def _on_instant(self, inst: Instant) -> None:
        """The points of one instant: stops and take-profits they reach, then the spot events that are due."""
        self._stops_at(inst)
        interval = self.config.spot_interval_s
        memo = self._burst_periods
        for s in list(self.sessions):
            if not s.spots:
                continue
            periods = memo.get(id(s)) if memo is not None else None
            if periods is None:
                periods = {}
                for sid, period in s.trendbars:
                    periods.setdefault(sid, []).append(timeframes.period_seconds(period))
                if memo is not None:
                    memo[id(s)] = periods
            for (sid, point), before, after in zip(inst.points, inst.previous, inst.following, strict=True):
                if sid in s.spots and (
                    interval <= 60 or spot_due(before, point.time, after, interval, periods.get(sid, ()))
                ):
                    self._send_spot(s, sid)

    def _closed_from(self, nxt: int) -> int | None:
        """When the next instant is more than a minute away every market closes in between: the time from which
        none is open (the clock stands there meanwhile), or None."""
        now = self.market.now
        if nxt - now <= 60:
            return None
        closes = [s.calendar.next_close(now) for s in self.symbols.values()]
        at = max((c for c in closes if c is not None), default=None)
        return at if at is not None and now < at < nxt else None

    async def _replay_loop(self) -> None:
        """The timed replay: `speed` simulated seconds per wall second, a closed stretch taking at most one bar of
        the configured timeframe (`tf_seconds`) of simulated time."""
        loop = asyncio.get_running_loop()
        anchor: tuple[float, float, float] | None = None  # wall time, simulated seconds, speed
        simulated = 0.0
        while True:
            if self.paused or self.speed <= 0:
                anchor = None
                self._wake.clear()
                await self._wake.wait()
                continue
            nxt = self.market.next_time()
            if nxt is None:
                self.paused = True
                log.info("replay reached the end of the data")
                continue
            cost = min(nxt - self.market.now, self.tf_seconds)
            closed_from = self._closed_from(nxt)
            if closed_from is not None:
                self.advance_until(closed_from)
            if anchor is None or anchor[2] != self.speed:
                anchor = (loop.time(), simulated, self.speed)
            simulated += cost
            delay = anchor[0] + (simulated - anchor[1]) / self.speed - loop.time()
            if delay > 0.001:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                if self._wake.is_set():  # paused, resumed or a new speed: start over from here
                    simulated -= cost
                    anchor = None
                    continue
            else:
                if delay < -1.0:  # far behind (a busy machine): no burst to catch up
                    anchor = None
                await asyncio.sleep(0)
            if not self.paused and self.speed > 0:
                self._step()
