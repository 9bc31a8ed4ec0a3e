"""The simulator's replay clock: instants processed on request (`advance`, `advance_bars`, `advance_until`, from
the control port) or timed (`speed` simulated seconds per wall second), each one's stops, spot events, token
expiries, swaps and state saves; a closed stretch is crossed quickly. What an advance sends goes out coalesced
(`_coalesced`): at the end of a bar, the burst's first at once, then at most one write every `BURST_FLUSH_S`.

A mixin of SimServer (server.py): it uses the server's market cursor, sessions, config and `_send`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from services.connector.ctrader import periods as timeframes
from services.connector.sim.account import SimPosition
from services.connector.sim.costs import next_rollover
from services.connector.sim.market import Hour, Instant, spot_due

if TYPE_CHECKING:
    from services.connector.sim.connections import Session

log = logging.getLogger(__name__)


# a burst's frames go out at the end of a bar, at most once per this many seconds (a write is a system call that
# costs a burst about as much as a bar's instants: one a bar was a quarter of a burst's CPU)
BURST_FLUSH_S = 0.002


class ReplayClock:
    _flush_due = 0.0  # a burst's next flush at the end of a bar: not before this (time.monotonic)
    _rollover_memo: tuple[tuple[int, ...], int, int] | None = None  # positions, since, their next rollover
    # while an advance runs (synchronously: no request is handled meanwhile, so no subscription changes), each
    # session's live trendbar periods per symbol, made once (by id: a Session is not hashable); None: made per instant
    _burst_periods: dict[int, dict[int, tuple[int, ...]]] | None = None

    @contextlib.contextmanager
    def _burst(self) -> Iterator[None]:
        """An advance: what it sends goes out coalesced (`_coalesced`), the sessions' periods made once."""
        outer = self._burst_periods is not None
        if not outer:
            self._burst_periods = {}
            self._burst_spot_periods = {}
            self._flush_due = 0.0
        try:
            with self._coalesced():
                yield
        finally:
            if not outer:
                self._burst_periods = None
                self._burst_spot_periods = None

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
        """Process every instant up to time `t` and set the clock to `t` (within the data). The instants where
        nothing but the market moves and spots go out (`_quiet_through`) are processed as runs (`_quiet_run`);
        what is sent and the state after are those of stepping each (tests/services/connector/
        test_sim_burst_bytes.py holds the bytes)."""
        if t < self.market.now:
            raise ValueError(f"until {t} is before the server time {self.market.now}")
        done = 0
        with self._burst():
            while (nxt := self.market.next_time()) is not None and nxt <= t:
                end = self._quiet_through(nxt, t)
                ran = 0 if end is None else self._quiet_run(end)
                if not ran:
                    self._step()
                    ran = 1
                done += ran
            if t > self.market.now:
                self.market.advance_clock(t)
                self._after_clock()
        return done

    def _quiet_through(self, nxt: int, t: int) -> int | None:
        """The last time up to `t` through which the instants from the next one (at `nxt`) are quiet: within the
        bar of the configured timeframe holding the next instant (the first may start it: `_quiet_run` saves
        and flushes after it), no token due to expire, no rollover passing with a position open (stops:
        `_quiet_run`); None when the next instant is not quiet."""
        tf = self.tf_seconds
        end = min(t, nxt - nxt % tf + tf - 1)
        expiry = self._next_expiry_ms
        if expiry is not None:
            end = min(end, (expiry - 1) // 1000)  # t * 1000 < expiry
        elif any(tok.expires_ms is not None and access not in self._announced
                 for access, tok in self.tokens.tokens.items()):
            return None  # `check_token_expiry` finds the next expiry at the next instant
        positions = self.account.positions
        if positions:
            if self._swapped_until is None:
                return None
            end = min(end, self._next_rollover(self._swapped_until, positions) - 1)
            self.market.price(p.symbol_id for p in positions.values())  # as `_step`: their stops need points
        return end if nxt <= end else None

    def _next_rollover(self, since: int, positions: dict[int, SimPosition]) -> int:
        """The first rollover after `since` of the positions' symbols (a swap may be charged there); the same
        from any later `since` before it, for the same positions."""
        held = tuple(positions)
        memo = self._rollover_memo
        if memo is not None and memo[0] == held and memo[1] <= since < memo[2]:
            return memo[2]
        symbols = {p.symbol_id for p in positions.values()}
        found = min(next_rollover(since, self.symbols[sid].swap) for sid in symbols)
        self._rollover_memo = (held, since, found)
        return found

    def _quiet_run(self, end: int) -> int:
        """The quiet instants from the next one through time `end`, within its hour, up to (not including) the
        first where a position's stop or take-profit triggers: the market folds them in at once, the instants
        with a spot due for a session stepped one by one to send them. Returns how many were processed."""
        market = self.market
        got = market.upcoming(end)
        if got is None:
            return 0
        hour, k0, k1 = got
        if self.account.positions:
            k1 = self._first_trigger(hour, k0, k1)
            if k1 == k0:
                return 0
        due: set[int] = set()
        memo = self._burst_periods
        interval = self.config.spot_interval_s
        for s in self.sessions:
            if not s.spots:
                continue
            periods = self._session_periods(s, memo)
            for sid in s.spots:
                track = hour.tracks.get(sid)
                if track is not None:
                    due |= track.due_at(interval, periods.get(sid, ()))
        first = hour.times[k0]
        starts = first - first % self.tf_seconds != self._saved_bucket  # the run's first instant starts a bar
        stops = {x for x in due if k0 <= x < k1}
        if starts:
            stops.add(k0)
        generation = market.generation
        k = k0
        for d in sorted(stops):
            market.skip(hour, k, d + 1)  # through the instant due: one fold, its price the last looked at
            k = d + 1
            if d in due:
                self._spots_due(hour, d)
            if starts and d == k0:
                self._bar_started()
            if market.generation != generation:  # the instants were made anew (a symbol priced): stop here
                k1 = k
                break
        if k < k1:
            market.skip(hour, k, k1)
        self._swapped_until = market.now  # as `_swaps_until` leaves it at each instant
        return k1 - k0

    def _first_trigger(self, hour: Hour, k0: int, k1: int) -> int:
        """The index of the first of the hour's instants [k0, k1) where a position's stop or take-profit
        triggers (k1: none). A quote reaches a stop or a take-profit iff the lowest or the highest bid does (the
        ask grows with the bid): the points are looked at one by one only when one of those does."""
        account, market = self.account, self.market
        held = {p.symbol_id for p in account.positions.values()}
        first = k1
        t0, t1 = hour.times[k0], hour.times[k1 - 1]
        for sid in held:
            track = hour.tracks.get(sid)
            if track is None:
                continue
            a = bisect.bisect_left(track.times, t0)
            b = bisect.bisect_right(track.times, t1, a)
            if a == b:
                continue
            if not any(account.triggered(sid, bid, market.ask_of(sid, bid)) for bid in track.extremes(a, b)):
                continue
            for j in range(a, b):
                bid = track.price(j)
                if account.triggered(sid, bid, market.ask_of(sid, bid)):
                    first = min(first, track.at[j])
                    break
        return first

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
        if self.market.bar_time != self._saved_bucket:
            self._bar_started()

    def _bar_started(self) -> None:
        """The clock entered a new bar of the configured timeframe: the state file follows the clock bar by bar,
        and in a burst what the bars before sent goes out as this one starts."""
        self._saved_bucket = self.market.bar_time
        self._save_state()
        if self._coalescing and (now := time.monotonic()) >= self._flush_due:
            self._flush()
            self._flush_due = now + BURST_FLUSH_S

    @staticmethod
    def _session_periods(s: Session, memo: dict[int, dict[int, tuple[int, ...]]] | None) -> dict[int, tuple[int, ...]]:
        """The session's live trendbar periods (seconds, sorted) per symbol, made once per burst."""
        periods = memo.get(id(s)) if memo is not None else None
        if periods is None:
            lists: dict[int, list[int]] = {}
            for sid, period in s.trendbars:
                lists.setdefault(sid, []).append(timeframes.period_seconds(period))
            periods = {sid: tuple(sorted(p)) for sid, p in lists.items()}
            if memo is not None:
                memo[id(s)] = periods
        return periods

    def _on_instant(self, inst: Instant) -> None:
        """The points of one instant: stops and take-profits they reach, then the spot events that are due."""
        self._stops_at(inst)
        self._spots_at(inst)

    def _spots_at(self, inst: Instant) -> None:
        """The spot events due at an instant, session by session in order."""
        interval = self.config.spot_interval_s
        memo = self._burst_periods
        for s in list(self.sessions):
            if not s.spots:
                continue
            periods = self._session_periods(s, memo)
            for (sid, point), before, after in zip(inst.points, inst.previous, inst.following, strict=True):
                if sid in s.spots and (
                    interval <= 60 or spot_due(before, point.time, after, interval, periods.get(sid, ()))
                ):
                    self._send_spot(s, sid)

    def _spots_due(self, hour: Hour, k: int) -> None:
        """`_spots_at` for the hour's instant k just processed, its due spots as the tracks know them."""
        interval = self.config.spot_interval_s
        memo = self._burst_periods
        symbols = hour.symbols_at(k)
        for s in list(self.sessions):
            if not s.spots:
                continue
            periods = self._session_periods(s, memo)
            for sid in symbols:
                if sid in s.spots and k in hour.tracks[sid].due_at(interval, periods.get(sid, ())):
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
