"""The simulator's market over the wire (a raw Open API session and the real broker client against SimServer):
calendars in ProtoOASymbol, spot events only while open, live trendbars of several periods at once, history of
every period with its span limit, MARKET_CLOSED, stops only at points, spot spacing, the state file."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from simclient import ACCOUNT, RawSession, SimFactory, broker_config, next_event, run

from services.connector.ctrader import parsing
from services.connector.ctrader import schemas as proto
from services.connector.ctrader.client import CTraderBroker
from services.connector.ctrader.transport import ErrorResponse
from services.connector.port import Bar, PositionClosed
from services.connector.sim.catalog import CATALOG
from services.connector.sim.control import acontrol
from services.connector.sim.ops_market import TRENDBAR_SPAN_LIMIT_MS
from services.connector.sim.replay import CsvBar
from services.connector.sim.series import served_bars
from services.connector.sim.server import SimThread

oa = proto.oa
START = 130  # Monday 2017-01-09 08:00 UTC
FRIDAY_LAST = 119  # Friday 2017-01-06 21:00 UTC: the week's last H1 bar (New York 16:00-17:00)
SUNDAY_FIRST = 120  # Sunday 2017-01-08 22:00 UTC
PERIODS = {"M1": 1, "M5": 5, "M15": 7, "M30": 8, "H1": 9, "H4": 10, "D1": 12}
SECONDS = {"M1": 60, "M5": 300, "M15": 900, "M30": 1800, "H1": 3600, "H4": 14_400, "D1": 86_400}


def row(b: Bar | CsvBar) -> tuple:
    return (b.time, b.open, b.high, b.low, b.close, b.volume)


def closed_from_snapshots(spots: list[Any], period: int, digits: int = 5) -> list[Bar]:
    """The closed bars a client reads from live trendbars: the last snapshot of each bar before a newer one."""
    out: list[Bar] = []
    pending: Bar | None = None
    for ev in spots:
        for tb in ev.trendbar:
            if tb.period != period:
                continue
            bar = parsing.trendbar_to_bar(tb, "X", digits)
            if pending is not None and bar.time > pending.time:
                out.append(pending)
            pending = bar
    return out


def test_symbols_carry_their_trading_calendars(sim_factory: SimFactory) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        s = await RawSession(sim).open()
        ids = [sym.spec.symbol_id for sym in CATALOG.values()]
        res = await s.request(oa.ProtoOASymbolByIdReq(ctidTraderAccountId=ACCOUNT, symbolId=ids))
        by_id = {sym.spec.symbol_id: sym for sym in CATALOG.values()}
        for msg in res.symbol:
            assert parsing.calendar(msg) == by_id[msg.symbolId].calendar
            assert msg.scheduleTimeZone == "America/New_York" and msg.schedule
        christmas = next(m for m in res.symbol if m.symbolId == 1).holiday[0]
        assert (christmas.holidayDate, christmas.isRecurring, christmas.startSecond, christmas.endSecond) == (
            17525, True, 3 * 3600, 17 * 3600)
        await s.close()

    run(scenario())


def test_spot_events_carry_the_forming_bar_of_every_subscribed_period(sim_factory: SimFactory, csv_bars) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        s = await RawSession(sim).open()
        await s.subscribe([1], {1: ["M1", "M5", "H1"]})  # the bar START is forming with its first instant
        initial = len(s.spots)
        reply = await s.advance(bars=2)  # bars START and START + 1 close
        live = s.spots[initial:]
        assert reply["ticks"] == 119 + 1 and len(live) == 120  # one instant a minute, each a spot event
        assert all([tb.period for tb in ev.trendbar] == [1, 5, 9] for ev in live)
        stamps = [ev.timestamp // 1000 for ev in live]
        assert stamps == sorted(set(stamps)) and all(t % 60 for t in stamps)
        first, last = csv_bars[START].time, csv_bars[START + 2].time
        for name in ("M1", "M5", "H1"):
            want = served_bars(csv_bars, CATALOG["EURUSD"], name, first, last)
            got = closed_from_snapshots(s.spots, PERIODS[name])
            assert [row(b) for b in got if b.time >= first] == [row(b) for b in want], name
        await s.close()

    run(scenario())


def test_no_spot_while_the_market_is_closed(sim_factory: SimFactory, csv_bars) -> None:
    sim = sim_factory(start_bar=FRIDAY_LAST)
    ids = {name: CATALOG[name].spec.symbol_id for name in ("EURUSD", "XAUUSD", "US500")}

    async def scenario() -> None:
        s = await RawSession(sim).open()
        await s.subscribe(list(ids.values()))
        s.spots.clear()
        saturday = csv_bars[FRIDAY_LAST].time + 86_400
        status = await s.advance(until=saturday)
        assert status["server_time"] == saturday
        assert not any(v["open"] for v in status["symbols"].values())
        assert status["symbols"]["EURUSD"]["next_point"] // 60 * 60 == csv_bars[SUNDAY_FIRST].time
        assert status["bar_index"] == FRIDAY_LAST and status["bar_time"] == saturday - saturday % 3600
        friday = len(s.spots)
        assert friday and all(ev.timestamp // 1000 < csv_bars[FRIDAY_LAST].time + 3600 for ev in s.spots)
        await s.advance(until=csv_bars[SUNDAY_FIRST].time + 2 * 3600)
        sunday = s.spots[friday:]
        for name, sid in ids.items():
            calendar = CATALOG[name].calendar
            times = [ev.timestamp // 1000 for ev in s.spots if ev.symbolId == sid]
            assert times and all(calendar.is_open(t) for t in times), name
        first = {sid: min(ev.timestamp // 1000 for ev in sunday if ev.symbolId == sid) for sid in ids.values()}
        assert first[ids["EURUSD"]] - csv_bars[SUNDAY_FIRST].time in range(1, 60)  # 17:00 New York
        assert first[ids["XAUUSD"]] - csv_bars[SUNDAY_FIRST].time in range(3601, 3660)  # 18:00: after its break
        await s.close()

    run(scenario())


@pytest.mark.parametrize("name", list(PERIODS))
def test_history_of_every_period_ends_with_the_forming_bar(sim_factory: SimFactory, csv_bars, name: str) -> None:
    sim = sim_factory(start_bar=1000)

    async def scenario() -> None:
        s = await RawSession(sim).open()
        await s.advance(ticks=37)
        now = sim.server.market.now
        limit = TRENDBAR_SPAN_LIMIT_MS[name]
        bars = await s.trendbars(1, name, now * 1000 - limit, now * 1000)
        period = SECONDS[name]
        assert bars and bars[-1].time == now - now % period  # the forming bar last
        assert bars[-1].close == sim.server.market.last_point(1).price
        complete = served_bars(csv_bars, CATALOG["EURUSD"], name, bars[0].time, bars[-1].time)
        assert [row(b) for b in bars[:-1]] == [row(b) for b in complete]
        assert len(bars) == min(len(bars), sim.server.config.history_page)
        three = await s.trendbars(1, name, now * 1000 - limit, now * 1000, count=3)
        assert [row(b) for b in three] == [row(b) for b in bars[-3:]]
        # the span limit is the last accepted one; a millisecond more, or from after to, is refused
        for frm, to in ((now * 1000 - limit - 1, now * 1000), (now * 1000 + 1, now * 1000)):
            with pytest.raises(ErrorResponse) as err:
                await s.trendbars(1, name, frm, to)
            assert err.value.code == "INCORRECT_BOUNDARIES"
        await s.close()

    run(scenario())


def test_weekly_and_monthly_bars_are_not_served(sim_factory: SimFactory) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        s = await RawSession(sim).open()
        for period in (13, 14):
            with pytest.raises(ErrorResponse) as err:
                await s.request(oa.ProtoOAGetTrendbarsReq(ctidTraderAccountId=ACCOUNT, symbolId=1, period=period,
                                                          fromTimestamp=0, toTimestamp=1000))
            assert err.value.code == "INVALID_REQUEST"
        await s.close()

    run(scenario())


def broker_for(sim: SimThread) -> CTraderBroker:
    return CTraderBroker(broker_config(sim, request_timeout=3.0, order_timeout=3.0))


def test_orders_are_refused_while_the_market_is_closed(sim_factory: SimFactory, csv_bars) -> None:
    sim = sim_factory(start_bar=FRIDAY_LAST)

    async def scenario() -> None:
        broker = broker_for(sim)
        await broker.connect()
        cp = sim.server.control_port
        buy = await broker.market_order("EURUSD", 1, 0.1)
        gold = await broker.market_order("XAUUSD", 1, 0.01)
        assert buy.success and gold.success
        await acontrol(cp, "advance", until=csv_bars[FRIDAY_LAST].time + 86_400)  # Saturday
        refused = [
            await broker.market_order("EURUSD", 1, 0.1),
            await broker.close_position(buy.ticket),
            await broker.amend_position(buy.ticket, sl=round(buy.price - 0.01, 5)),
        ]
        assert all(not r.success and r.error.startswith("MARKET_CLOSED") for r in refused), refused
        assert len((await acontrol(cp, "status"))["positions"]) == 2
        # Sunday 22:00 UTC: forex opens, gold (18:00 New York) an hour later
        await acontrol(cp, "advance", until=csv_bars[SUNDAY_FIRST].time + 120)
        closed_gold = await broker.close_position(gold.ticket)
        assert not closed_gold.success and closed_gold.error.startswith("MARKET_CLOSED")
        assert (await broker.close_position(buy.ticket)).success
        await acontrol(cp, "advance", until=csv_bars[SUNDAY_FIRST].time + 3600 + 120)
        assert (await broker.close_position(gold.ticket)).success
        await broker.close()

    run(scenario())


def test_a_partial_fill_shows_the_order_as_ordered(sim_factory: SimFactory) -> None:
    """ORDER_ACCEPTED and ORDER_PARTIAL_FILL show the order with the volume ordered (its executedVolume what the
    first deal filled), ORDER_FILLED with all of it executed; the position holds what is filled so far."""
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        s = await RawSession(sim).open()
        await acontrol(sim.server.control_port, "partial_fills", count=1, fraction=0.3)
        await s.tr.send(oa.ProtoOANewOrderReq(ctidTraderAccountId=ACCOUNT, symbolId=1, orderType=1, tradeSide=1,
                                              volume=1_000_000), "part-1")
        await s.request(oa.ProtoOAVersionReq())  # answered in order: every frame of the order has been read
        events = [m for cid, m in s.answered if cid == "part-1"]
        assert [e.executionType for e in events] == [2, 11, 3]  # ORDER_ACCEPTED, ORDER_PARTIAL_FILL, ORDER_FILLED
        accepted, part, filled = (e.order for e in events)
        assert accepted.tradeData.volume == part.tradeData.volume == filled.tradeData.volume == 1_000_000
        assert (part.orderStatus, part.executedVolume, events[1].deal.filledVolume) == (1, 300_000, 300_000)
        assert (filled.orderStatus, filled.executedVolume, events[2].deal.filledVolume) == (2, 1_000_000, 700_000)
        assert [e.position.tradeData.volume for e in events] == [300_000, 300_000, 1_000_000]
        await s.close()

    run(scenario())


def test_stops_trigger_only_at_points(sim_factory: SimFactory, csv_bars) -> None:
    sim = sim_factory(start_bar=FRIDAY_LAST)

    async def scenario() -> None:
        broker = broker_for(sim)
        await broker.connect()
        cp = sim.server.control_port
        await acontrol(cp, "advance", until=csv_bars[FRIDAY_LAST].time + 3599)  # after Friday's last point
        # a stop 2 pips under the entry (1.05354, the ask of Friday's close 1.05346): Sunday opens at 1.05308, so
        # the next point reaches it, and that comes on Sunday
        res = await broker.market_order("EURUSD", 1, 0.1, sl_distance=0.0002, client_order_id="gap-1")
        assert res.success
        await acontrol(cp, "advance", until=csv_bars[FRIDAY_LAST].time + 86_400)
        assert [p["label"] for p in (await acontrol(cp, "status"))["positions"]] == ["gap-1"]
        await acontrol(cp, "advance", ticks=1)
        closed = await next_event(broker, PositionClosed)
        assert closed.ticket == res.ticket and closed.reason == "SL_TP"
        assert int(closed.time) // 60 * 60 == csv_bars[SUNDAY_FIRST].time  # at Sunday's first point
        assert closed.close_price == sim.server.market.last_point(1).price  # its price, not the stop's
        await broker.close()

    run(scenario())


def test_fridays_last_bar_closes_when_sunday_opens(sim_factory: SimFactory, eurusd_h1, csv_bars) -> None:
    sim = sim_factory(start_bar=FRIDAY_LAST - 1)

    async def scenario() -> None:
        broker = broker_for(sim)
        await broker.connect()
        cp = sim.server.control_port
        await broker.subscribe_bars(["EURUSD"], "H1")
        await acontrol(cp, "advance", bars=1)
        first = await next_event(broker, Bar)
        assert row(first) == row(eurusd_h1[FRIDAY_LAST - 1])
        await acontrol(cp, "advance", until=csv_bars[SUNDAY_FIRST].time - 1)  # the whole weekend
        await broker.get_positions(refresh=True)  # a round trip: every spot event before it has been read
        assert not [e for e in drain(broker) if isinstance(e, Bar)]  # no tick after it yet: not closed
        await acontrol(cp, "advance", ticks=1)
        friday = await next_event(broker, Bar)
        assert row(friday) == row(eurusd_h1[FRIDAY_LAST])
        await broker.close()

    run(scenario())


def drain(broker: CTraderBroker) -> list[Any]:
    out = []
    while not broker.events.empty():
        out.append(broker.events.get_nowait())
    return out


@pytest.mark.parametrize(("interval", "periods", "per_hour"), [
    (3600, [], 1), (3600, ["H1"], 2), (3600, ["M15"], 8), (60, [], 60), (600, [], 6),
])
def test_spot_spacing_keeps_live_bars_whole(sim_factory: SimFactory, csv_bars, interval: int, periods: list[str],
                                            per_hour: int) -> None:
    sim = sim_factory(start_bar=START, spot_interval_s=interval)

    async def scenario() -> None:
        s = await RawSession(sim).open()
        await s.subscribe([1, 2], {1: periods})
        s.spots.clear()
        await s.advance(bars=3)
        hours = [csv_bars[START + k].time for k in (1, 2)]
        for sid in (1, 2):
            stamps = [ev.timestamp // 1000 for ev in s.spots if ev.symbolId == sid]
            spots_per_hour = [sum(h <= t < h + 3600 for t in stamps) for h in hours]
            assert spots_per_hour == [per_hour if sid == 1 else 3600 // max(interval, 60)] * 2, sid
        for name in periods:
            got = closed_from_snapshots([ev for ev in s.spots if ev.symbolId == 1], PERIODS[name])
            want = served_bars(csv_bars, CATALOG["EURUSD"], name, csv_bars[START].time, csv_bars[START + 3].time)
            assert [row(b) for b in got if b.time >= csv_bars[START].time] == [row(b) for b in want]
        await s.close()

    run(scenario())


def test_an_older_state_file_is_migrated(sim_factory: SimFactory, csv_bars, tmp_path, caplog) -> None:
    state = tmp_path / "old.json"
    account = {"account_id": ACCOUNT, "balance": 1_234_500, "money_digits": 2, "leverage_in_cents": 10_000,
               "next_id": 1, "positions": [], "deals": []}
    state.write_text(json.dumps({"bar_index": START, "account": account}))
    with caplog.at_level(logging.WARNING, logger="services.connector.sim.state_file"):
        sim = sim_factory(start_bar=0, state_path=str(state))
    assert "older simulator" in caplog.text
    market = sim.server.market
    assert market.bar_index == START and market.now - csv_bars[START].time in range(1, 60)
    assert sim.server.account.balance == 1_234_500
    run(acontrol(sim.server.control_port, "advance", ticks=7))
    run(acontrol(sim.server.control_port, "save"))
    saved = json.loads(state.read_text())
    assert (saved["version"], saved["cursor_time"], saved["bar_index"]) == (3, market.now, START)
    assert "deals" not in saved["account"] and saved["history_lines"] == 0  # the history has its own file
    now = market.now
    sim.stop()
    again = sim_factory(start_bar=0, state_path=str(state))
    assert again.server.market.now == now  # the clock exactly where it stood
    state.write_text(json.dumps({"account": account}))
    with pytest.raises(ValueError, match="no replay cursor"):
        sim_factory(state_path=str(state))


def test_the_account_history_is_appended_and_read_back_and_a_torn_save_is_cut(sim_factory: SimFactory,
                                                                                tmp_path) -> None:
    state = tmp_path / "sim.json"
    sim = sim_factory(start_bar=START, state_path=str(state))

    async def trade() -> None:
        broker = broker_for(sim)
        await broker.connect()
        res = await broker.market_order("EURUSD", 1, 0.1, client_order_id="hist-1")
        assert (await broker.close_position(res.ticket)).success
        await broker.close()

    run(trade())
    deals, orders = sim.server.account.deals, sim.server.account.orders
    run(acontrol(sim.server.control_port, "save"))
    history = tmp_path / "sim.json.history.jsonl"
    lines = history.read_text().splitlines()
    assert len(lines) == 4 and json.loads(state.read_text())["history_lines"] == 4  # 2 deals, 2 orders
    sim.stop()
    with history.open("a") as f:  # a save cut by a crash after its history, before its state
        f.write(json.dumps({"deal": {**json.loads(lines[0])["deal"], "deal_id": 999}}) + "\n")
    again = sim_factory(start_bar=0, state_path=str(state))
    assert (again.server.account.deals, again.server.account.orders) == (deals, orders)
    assert history.read_text().splitlines() == lines  # the torn line is gone


def test_the_timed_replay_holds_the_clock_at_the_close_over_a_weekend(sim_factory: SimFactory, csv_bars) -> None:
    # speed 60: an H1 bar of simulated time is a minute of wall time, and so is the weekend (capped at one bar),
    # the clock standing at the close meanwhile
    sim = sim_factory(start_bar=FRIDAY_LAST, speed=60)
    friday_close = csv_bars[FRIDAY_LAST].time + 3600

    async def scenario() -> None:
        cp = sim.server.control_port
        await acontrol(cp, "advance", until=friday_close - 1)  # every Friday point processed
        assert sim.server._closed_from(sim.server.market.next_time()) == friday_close
        broker = broker_for(sim)
        await broker.connect()
        await acontrol(cp, "resume")
        while (await acontrol(cp, "status"))["server_time"] < friday_close:  # the replay's first step, at once
            await asyncio.sleep(0.01)
        await acontrol(cp, "pause")
        status = await acontrol(cp, "status")
        assert status["server_time"] == friday_close and not status["symbols"]["EURUSD"]["open"]
        refused = await broker.market_order("EURUSD", 1, 0.1)
        assert not refused.success and refused.error.startswith("MARKET_CLOSED")
        await broker.close()

    run(scenario())


def test_advancing_past_the_end_of_the_data_stops_at_its_last_point(sim_factory: SimFactory, csv_bars) -> None:
    sim = sim_factory(start_bar=len(csv_bars) - 2)

    async def scenario() -> None:
        status = await acontrol(sim.server.control_port, "advance", bars=5)
        assert status["ticks"] == 119 and status["next_point_time"] is None  # the two last hours, then nothing
        assert status["server_time"] - csv_bars[-1].time in range(59 * 60 + 1, 3600)
        assert (await acontrol(sim.server.control_port, "advance", ticks=3))["ticks"] == 0

    run(scenario())


@pytest.mark.parametrize("interval", [60, 3600])
def test_a_burst_sends_what_as_many_single_bar_advances_send(sim_factory: SimFactory, csv_bars,
                                                             interval: int) -> None:
    """`advance bars=N` (one burst: its target found bar by bar, the sessions' periods made once, the frames
    coalesced) sends the same spot events, trendbars included, and leaves the clock where N advances of one bar
    do; across a weekend, two symbols priced, one of them with two periods."""
    start, n = FRIDAY_LAST - 6, 12

    async def replay(burst: bool) -> tuple[list[str], dict]:
        sim = sim_factory(start_bar=start, spot_interval_s=interval)
        s = await RawSession(sim).open()
        await s.subscribe([1, 2], {1: ["M15", "H1"], 2: ["H1"]})
        s.events.clear()
        if burst:
            status = await s.advance(bars=n)
        else:
            for _ in range(n):
                status = await s.advance(bars=1)
        await s.close()
        return [repr(ev) for ev in s.spots], status  # every field present, the trendbars too

    async def scenario() -> None:
        one, one_status = await replay(burst=True)
        many, many_status = await replay(burst=False)
        assert one and one == many
        assert (one_status["server_time"], one_status["bar_index"]) == (many_status["server_time"],
                                                                        many_status["bar_index"])
        assert csv_bars[one_status["bar_index"]].time > csv_bars[SUNDAY_FIRST].time  # the weekend crossed

    run(scenario())
