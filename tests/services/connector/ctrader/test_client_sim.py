"""The broker client against the simulator over real sockets (the simulator runs on its own loop/thread)."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
from simclient import SimFactory, broker_config, collect, connected, next_event, run

from services.connector.ctrader.client import CTraderBroker
from services.connector.ctrader.schemas import model, oa
from services.connector.ctrader.transport import ErrorResponse, Transport, TransportConfig
from services.connector.port import (
    AuthenticationError,
    Bar,
    BrokerConnectionError,
    ConnectionStatus,
    OrderFilled,
    OrderRejected,
    PositionClosed,
)
from services.connector.sim.catalog import CATALOG
from services.connector.sim.control import acontrol
from services.connector.sim.replay import CsvBar

START = 130  # Monday 2017-01-09 08:00 UTC; 50 bars back crosses the first weekend


def same_bar(b: Bar, c: CsvBar) -> bool:
    """A bar the broker delivered equals the simulator's served bar (`eurusd_h1`: volume in ticks)."""
    return (b.time, b.open, b.high, b.low, b.close, b.volume) == (c.time, c.open, c.high, c.low, c.close, c.volume)


def test_auth_flow_reference_data_and_account(sim_factory: SimFactory) -> None:
    sim = sim_factory(tls=True)

    async def scenario() -> None:
        broker = await connected(sim)
        assert broker.account_id == 1_000_001  # discovered from the access token
        assert set(broker.symbols) == set(CATALOG)
        jpy = broker.instrument("USDJPY")
        assert (jpy.digits, jpy.pip_position, jpy.lot_units, jpy.min_lots, jpy.quote_asset) == (3, 2, 100_000.0, 0.01,
                                                                                                 "JPY")
        acct = await broker.get_account(refresh=True)
        assert (acct.balance, acct.equity, acct.margin, acct.currency, acct.leverage) == (10_000.0, 10_000.0, 0,
                                                                                          "USD", 100.0)
        await broker.close()
        for kw, code in [({"client_secret": "wrong"}, "CH_CLIENT_AUTH_FAILURE"),
                         ({"access_token": "wrong", "refresh_token": ""}, "CH_ACCESS_TOKEN_INVALID"),
                         ({"access_token": "wrong", "refresh_token": "wrong"}, "INVALID_REQUEST"),  # refresh refused
                         ({"account_id": 42}, "CH_CTID_TRADER_ACCOUNT_NOT_FOUND")]:
            bad = CTraderBroker(broker_config(sim, **kw))
            with pytest.raises(AuthenticationError) as err:
                await bad.connect()
            assert err.value.code == code and err.value.needs_operator
        # a dead access token with a good refresh token: refreshed, then connected with the new pair
        revived = CTraderBroker(broker_config(sim, access_token="wrong"))
        await revived.connect()
        assert revived.is_connected and revived.tokens.pair.access_token not in ("wrong", "sim-token")
        await revived.close()

    run(scenario())


def test_requests_before_app_auth_are_refused(sim_factory: SimFactory) -> None:
    sim = sim_factory()

    async def scenario() -> None:
        tr = Transport(TransportConfig("127.0.0.1", sim.server.port, tls=False, request_timeout=2))
        await tr.connect()
        with pytest.raises(ErrorResponse) as err:
            await tr.request(oa.ProtoOASymbolsListReq(ctidTraderAccountId=1_000_001))
        assert err.value.code == "CH_CLIENT_NOT_AUTHENTICATED"
        await tr.close()

    run(scenario())


def test_tls_certificate_is_verified(sim_factory: SimFactory, tmp_path) -> None:
    sim = sim_factory(tls=True)
    ca = tmp_path / "sim.pem"
    ca.write_bytes(sim.server.cert_pem or b"")

    async def scenario() -> None:
        ok = await connected(sim, verify=True, ca_file=str(ca))  # the self-signed cert, trusted explicitly
        assert ok.is_connected
        await ok.close()
        untrusted = CTraderBroker(broker_config(sim, verify=True))
        with pytest.raises(BrokerConnectionError) as err:
            await untrusted.connect()
        assert isinstance(err.value.__cause__, ssl.SSLError)

    run(scenario())


def test_history_is_exactly_n_closed_bars_across_a_weekend(sim_factory: SimFactory, eurusd_h1) -> None:
    sim = sim_factory(start_bar=START, history_page=20)  # 20 bars per answer: forces paging by from/to

    async def scenario() -> None:
        broker = await connected(sim)
        await acontrol(sim.server.control_port, "advance", ticks=2)  # bar START is forming
        bars = await broker.get_history("EURUSD", "H1", 50)
        expected = eurusd_h1[START - 50:START]
        assert len(bars) == 50
        assert all(same_bar(b, c) for b, c in zip(bars, expected, strict=True))
        gaps = [b2.time - b1.time for b1, b2 in zip(bars, bars[1:], strict=False)]
        assert max(gaps) >= 48 * 3600  # the weekend lies inside
        assert (await broker.get_history("EURUSD", "H1", 1))[0].time == eurusd_h1[START - 1].time
        await broker.close()

    run(scenario())


def test_history_requests_respect_five_per_second(sim_factory: SimFactory) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        to_ms = 1_490_000_000_000  # a week (inside the H1 span limit)
        req = oa.ProtoOAGetTrendbarsReq(ctidTraderAccountId=1_000_001, symbolId=1, period=9,
                                        fromTimestamp=to_ms - 7 * 86_400_000, toTimestamp=to_ms, count=2)

        async def burst(limit: int) -> tuple[int, float]:
            tr = Transport(TransportConfig("127.0.0.1", sim.server.port, tls=False, history_rate_limit=limit,
                                           rate_retries=0))
            await tr.connect()
            await tr.request(oa.ProtoOAApplicationAuthReq(clientId="sim-client", clientSecret="sim-secret"))
            await tr.request(oa.ProtoOAAccountAuthReq(ctidTraderAccountId=1_000_001, accessToken="sim-token"))
            loop = asyncio.get_running_loop()
            t0, refused = loop.time(), 0
            for _ in range(7):
                try:
                    await tr.request(req)
                except ErrorResponse as exc:
                    assert exc.code == "REQUEST_FREQUENCY_EXCEEDED"
                    refused += 1
            await tr.close()
            return refused, loop.time() - t0

        refused, _ = await burst(limit=100)  # a client that ignores the limit is refused by the server
        assert refused >= 2
        await asyncio.sleep(1.0)
        refused, elapsed = await burst(limit=5)  # ours waits instead
        assert refused == 0 and elapsed >= 0.3

    run(scenario())


def test_live_closed_bars_equal_the_served_bars(sim_factory: SimFactory, eurusd_h1) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        broker = await connected(sim)
        hist = await broker.get_history("EURUSD", "H1", 10)
        await broker.subscribe_bars(["EURUSD"], "H1", since={"EURUSD": hist[-1].time})
        await acontrol(sim.server.control_port, "advance", bars=40)
        bars = await collect(broker, Bar, 40)
        assert all(same_bar(b, c) for b, c in zip(bars, eurusd_h1[START:START + 40], strict=True))
        await broker.close()

    run(scenario())


def test_timed_replay_across_a_weekend_delivers_every_bar(sim_factory: SimFactory, eurusd_h1) -> None:
    start = 110  # Friday 2017-01-06 12:00: the replay runs through the weekend
    sim = sim_factory(start_bar=start, speed=3600 * 100)  # one H1 bar per 10 ms of wall time

    async def scenario() -> None:
        broker = await connected(sim)
        await broker.subscribe_bars(["EURUSD"], "H1")
        bars = await collect(broker, Bar, 25)
        first = next(i for i, c in enumerate(eurusd_h1) if c.time == bars[0].time)
        assert first >= start
        assert all(same_bar(b, c) for b, c in zip(bars, eurusd_h1[first:first + 25], strict=True))
        await broker.close()

    run(scenario())


@pytest.mark.parametrize(("symbol", "lots", "usd"), [
    ("EURUSD", 0.1, 100.0), ("USDJPY", 0.1, 50.0), ("XAUUSD", 0.05, 40.0), ("US500", 2.0, 60.0),
])
def test_a_stop_distance_from_an_amount_of_money_lands_where_the_broker_puts_it(
        sim_factory: SimFactory, symbol: str, lots: float, usd: float) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        broker = await connected(sim)
        spec = broker.instrument(symbol)
        rate = await broker.quote_to_deposit(symbol)
        if spec.quote_asset == "JPY":
            assert rate == pytest.approx(1 / broker.quote(symbol).bid)
        else:
            assert rate == 1.0
        units_ = lots * spec.lot_units
        res = await broker.market_order(symbol, -1, lots, sl_distance=usd / (units_ * rate),
                                        tp_distance=2 * usd / (units_ * rate))
        assert res.success and res.volume == pytest.approx(lots)
        (pos,) = await broker.get_positions(refresh=True)
        assert pos.volume == pytest.approx(lots)
        # the broker placed the stop where a move costs `usd` (within one point of rounding)
        assert (pos.sl - pos.open_price) * units_ * rate == pytest.approx(usd, abs=spec.point * units_ * rate)
        assert (pos.open_price - pos.tp) * units_ * rate == pytest.approx(2 * usd, abs=spec.point * units_ * rate)
        await broker.close()

    run(scenario())


def test_stop_hit_is_an_external_close_with_the_brokers_pnl(sim_factory: SimFactory) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        broker = await connected(sim)
        res = await broker.market_order("EURUSD", 1, 0.1, sl_distance=0.0005, tp_distance=0.0005,
                                        client_order_id="sl-test")
        await next_event(broker, OrderFilled)
        await acontrol(sim.server.control_port, "advance", bars=24)
        closed = await next_event(broker, PositionClosed)
        assert closed.ticket == res.ticket and closed.external and closed.reason == "SL_TP"
        assert closed.label == "sl-test"
        expected = round((closed.close_price - closed.entry_price) * 10_000, 2)
        assert closed.gross_profit == pytest.approx(expected, abs=0.01)
        # both sides' commission (30 USD per million of notional each) is realised with the close
        assert closed.commission < 0 and closed.net_profit == pytest.approx(closed.gross_profit + closed.commission)
        assert closed.balance == pytest.approx(10_000 + closed.net_profit)
        assert (await broker.get_account()).balance == closed.balance
        assert await broker.get_positions(refresh=True) == []
        await broker.close()

    run(scenario())


def test_client_close_amend_and_rejection(sim_factory: SimFactory) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        broker = await connected(sim)
        cp = sim.server.control_port
        res = await broker.market_order("USDJPY", 1, 0.2)
        amended = await broker.amend_position(res.ticket, sl=round(res.price - 0.5, 3), tp=round(res.price + 1, 3))
        assert amended.success
        (pos,) = await broker.get_positions(refresh=True)
        assert (pos.sl, pos.tp) == (round(res.price - 0.5, 3), round(res.price + 1, 3))
        bad = await broker.amend_position(res.ticket, sl=round(res.price + 5, 3))
        assert not bad.success and "TRADING_BAD_STOPS" in bad.error
        await acontrol(cp, "advance", ticks=3)
        closed = await broker.close_position(res.ticket, lots=0.1)
        assert closed.success and closed.volume == pytest.approx(0.1)
        part = await next_event(broker, PositionClosed)
        assert not part.external and part.reason == "CLIENT" and not part.full
        (pos,) = await broker.get_positions(refresh=True)
        assert pos.volume == pytest.approx(0.1)
        assert (await broker.close_position(res.ticket)).success
        final = await next_event(broker, PositionClosed)
        assert final.full and final.balance == pytest.approx(10_000 + part.net_profit + final.net_profit)
        await acontrol(cp, "reject_orders", count=1, code="NOT_ENOUGH_MONEY")
        rej = await broker.market_order("EURUSD", 1, 0.1, client_order_id="rej-1")
        assert not rej.success and (rej.error_code, rej.broker_code) == ("NOT_ENOUGH_MONEY", "NOT_ENOUGH_MONEY")
        assert (await next_event(broker, OrderRejected)).client_order_id == "rej-1"
        gold = await broker.market_order("XAUUSD", 1, 0.01, client_order_id="ok-1")
        assert gold.success and gold.volume == pytest.approx(0.01)
        too_small = await broker.market_order("XAUUSD", 1, 0.001)
        assert not too_small.success and too_small.error_code == "BAD_VOLUME"
        off_step = await broker.market_order("EURUSD", 1, 0.015)  # refused, never filled as 0.01
        assert not off_step.success and off_step.error_code == "BAD_VOLUME" and "step" in off_step.error
        missing = await broker.close_position(999_999)
        assert not missing.success and missing.error_code == "POSITION_NOT_FOUND"
        # the server's own refusal comes back as a result too (the sim refuses absolute SL on MARKET)
        req = oa.ProtoOANewOrderReq(ctidTraderAccountId=broker.account_id, symbolId=1, orderType=1, tradeSide=1,
                                    volume=100_000, stopLoss=1.0)
        refused = await broker.execution._send_and_wait(req, "order:manual")
        assert not refused.success and refused.error_code == "BAD_STOPS"
        await broker.close()

    run(scenario())


def test_equity_uses_the_net_unrealized_pnl(sim_factory: SimFactory) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        broker = await connected(sim)
        await broker.market_order("EURUSD", 1, 1.0)
        await acontrol(sim.server.control_port, "advance", ticks=6)
        await asyncio.sleep(0.1)
        (pos,) = await broker.get_positions()
        q = broker.quote("EURUSD")
        assert pos.current_price == q.bid
        assert pos.gross_pnl == pytest.approx((q.bid - pos.open_price) * 100_000, abs=0.01)
        # the opening's commission (30 per million of ~105 000 USD) and the closing's to come
        assert pos.commission == pytest.approx(-2 * round(pos.open_price * 100_000 * 30 / 1e6, 2), abs=0.01)
        assert pos.pnl == pytest.approx(pos.gross_pnl + pos.swap + pos.commission, abs=0.01)
        acct = await broker.get_account()
        assert acct.equity == pytest.approx(acct.balance + pos.pnl, abs=0.01)
        assert (acct.gross_pnl, acct.commission) == (pos.gross_pnl, pos.commission)
        assert acct.margin == pytest.approx(pos.open_price * 100_000 / 100, abs=0.01)
        assert acct.free_margin == pytest.approx(acct.equity - acct.margin, abs=0.01)
        await broker.close()

    run(scenario())


def test_the_book_in_memory_is_the_brokers_and_a_close_moves_the_balance_with_it(sim_factory: SimFactory) -> None:
    """`book_now`, read on another thread, answers what the broker loop answers; while positions open and close,
    every book read has the balance of its positions (never a position gone and its profit not in the balance)."""
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        broker = await connected(sim)
        cp = sim.server.control_port
        assert (await asyncio.to_thread(broker.book_now)).positions == ()
        opened = [await broker.market_order(sym, 1, 0.1) for sym in ("EURUSD", "GBPUSD")]
        await acontrol(cp, "advance", ticks=4)
        await asyncio.sleep(0.1)
        book = await asyncio.to_thread(broker.book_now)
        assert book is not None
        assert list(book.positions) == await broker.get_positions()
        assert book.account == await broker.get_account()
        assert {p.ticket for p in book.positions} == {r.ticket for r in opened}
        assert book.quotes["EURUSD"] == (broker.quote("EURUSD"), broker.rate_from_quotes("EURUSD"))

        seen: set[tuple[frozenset[int], float]] = set()
        done = False

        def read() -> None:
            while not done:
                b = broker.book_now()
                assert b is not None
                seen.add((frozenset(p.ticket for p in b.positions), b.account.balance))

        reader = asyncio.create_task(asyncio.to_thread(read))
        balances = [book.account.balance]
        for r in opened:
            assert (await broker.close_position(r.ticket)).success
            balances.append((await next_event(broker, PositionClosed)).balance)
        done = True
        await reader
        tickets = [frozenset(r.ticket for r in opened[i:]) for i in range(len(opened) + 1)]
        assert seen <= set(zip(tickets, balances, strict=True))
        last = await asyncio.to_thread(broker.book_now)
        assert (last.positions, last.account.balance) == ((), balances[-1])
        await broker.close()

    run(scenario())


def test_an_order_accepted_leaves_the_book_as_it_is_until_its_deal(sim_factory: SimFactory) -> None:
    """The acceptance of a close shows the position closed; the book keeps it (and the balance) until the deal."""
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        broker = await connected(sim)
        res = await broker.market_order("EURUSD", 1, 0.1)
        before = broker.execution.book
        accepted = oa.ProtoOAExecutionEvent(
            ctidTraderAccountId=broker.account_id, executionType=2,  # ORDER_ACCEPTED
            position=model.ProtoOAPosition(
                positionId=res.ticket, positionStatus=2, swap=0,  # POSITION_STATUS_CLOSED
                tradeData=model.ProtoOATradeData(symbolId=1, volume=1_000_000, tradeSide=1)))
        broker.execution.on_execution(accepted, "")
        assert broker.execution.book == before and list(before.positions) == [res.ticket]
        assert (await broker.close_position(res.ticket)).success
        closed = await next_event(broker, PositionClosed)
        after = broker.execution.book
        assert (dict(after.positions), after.balance) == ({}, closed.balance)
        await broker.close()

    run(scenario())


def test_timed_out_order_is_found_not_resent(sim_factory: SimFactory) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        broker = await connected(sim, order_timeout=0.5)
        cp = sim.server.control_port
        # the fill happens, but its execution events come 1.5 s late: the client times out
        await acontrol(cp, "delay", seconds=1.5, count=2, types=["ProtoOAExecutionEvent"])
        res = await broker.market_order("EURUSD", 1, 0.1, client_order_id="once-1")
        assert res.success and res.recovered
        again = await broker.market_order("EURUSD", 1, 0.1, client_order_id="once-1")  # a replayed request
        assert again.ticket == res.ticket
        await asyncio.sleep(1.5)  # the late events arrive and are recognised
        status = await acontrol(cp, "status")
        assert len(status["positions"]) == 1
        fills = [e for e in await drain(broker) if isinstance(e, OrderFilled)]
        assert [f.ticket for f in fills] == [res.ticket]
        # a request lost on the way is sent again, once
        await acontrol(cp, "swallow", count=1, types=["ProtoOANewOrderReq"])
        lost = await broker.market_order("EURUSD", -1, 0.1, client_order_id="once-2")
        assert lost.success and not lost.recovered
        status = await acontrol(cp, "status")
        assert sorted(p["label"] for p in status["positions"]) == ["once-1", "once-2"]
        await broker.close()

    run(scenario())


async def drain(broker: CTraderBroker) -> list:
    out = []
    while not broker.events.empty():
        out.append(broker.events.get_nowait())
    return out


def test_dropped_connection_misses_no_bar_and_duplicates_none(sim_factory: SimFactory, eurusd_h1) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        broker = await connected(sim)
        cp = sim.server.control_port
        await broker.subscribe_bars(["EURUSD"], "H1")
        await acontrol(cp, "advance", ticks=2)
        await acontrol(cp, "advance", bars=3)
        bars = await collect(broker, Bar, 3)
        await acontrol(cp, "drop", refuse_s=0.3)
        seen: list[Any] = []
        assert not (await next_event(broker, ConnectionStatus, seen=seen)).connected
        await acontrol(cp, "advance", bars=5)  # the market moves on while we are away
        assert (await next_event(broker, ConnectionStatus, seen=seen)).connected
        await acontrol(cp, "advance", bars=4)
        bars += [e for e in seen if isinstance(e, Bar)]
        bars += await collect(broker, Bar, 12 - len(bars))
        await asyncio.sleep(0.2)
        assert [e for e in await drain(broker) if isinstance(e, Bar)] == []
        first = next(i for i, c in enumerate(eurusd_h1) if c.time == bars[0].time)
        assert first == START
        assert all(same_bar(b, c) for b, c in zip(bars, eurusd_h1[START:START + 12], strict=True))
        await broker.close()

    run(scenario())


def test_silent_server_is_detected_and_the_session_recovers(sim_factory: SimFactory) -> None:
    sim = sim_factory(start_bar=START, heartbeat_interval=0.3)

    async def scenario() -> None:
        broker = await connected(sim, dead_after=1.0, request_timeout=1.0)
        await acontrol(sim.server.control_port, "silent", seconds=1.5)
        down = await next_event(broker, ConnectionStatus, timeout=5)
        assert not down.connected and "nothing received" in down.reason
        up = await next_event(broker, ConnectionStatus, timeout=10)
        assert up.connected and broker.is_connected
        await broker.close()

    run(scenario())


def test_position_closed_while_disconnected_is_reported(sim_factory: SimFactory) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        broker = await connected(sim)
        cp = sim.server.control_port
        res = await broker.market_order("EURUSD", -1, 0.1, sl_distance=0.0005, tp_distance=0.0005)
        await acontrol(cp, "drop", refuse_s=0.5)
        await next_event(broker, ConnectionStatus)
        await acontrol(cp, "advance", bars=24)  # the stop triggers while nobody listens
        assert (await acontrol(cp, "status"))["positions"] == []
        closed = await next_event(broker, PositionClosed, timeout=10)
        assert closed.ticket == res.ticket and closed.external
        assert closed.balance == pytest.approx(10_000 + closed.net_profit) and closed.commission < 0
        await broker.close()

    run(scenario())


def test_state_persists_across_a_simulator_restart(sim_factory: SimFactory, tmp_path) -> None:
    state = str(tmp_path / "sim-state.json")
    sim = sim_factory(start_bar=START, state_path=state)

    async def first() -> int:
        broker = await connected(sim)
        res = await broker.market_order("XAUUSD", 1, 0.02, client_order_id="persist-1")
        await acontrol(sim.server.control_port, "advance", bars=2)
        await broker.close()
        return res.ticket

    async def second(ticket: int) -> None:
        sim2 = sim_factory(start_bar=0, state_path=state)
        assert sim2.server.market.bar_index == START + 2
        broker = await connected(sim2)
        (pos,) = await broker.get_positions(refresh=True)
        assert (pos.ticket, pos.label, pos.symbol) == (ticket, "persist-1", "XAUUSD")
        again = await broker.market_order("XAUUSD", 1, 0.02, client_order_id="persist-1")
        assert again.ticket == ticket and again.recovered
        await broker.close()

    holder: list[int] = []

    async def run_first() -> None:
        holder.append(await first())

    run(run_first())
    sim.stop()
    run(second(holder[0]))


def test_connection_lost_while_an_order_is_in_flight_creates_one_order(sim_factory: SimFactory) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        broker = await connected(sim, order_timeout=5.0)
        cp = sim.server.control_port
        await acontrol(cp, "delay", seconds=5, count=2, types=["ProtoOAExecutionEvent"])
        order = asyncio.create_task(broker.market_order("EURUSD", 1, 0.1, client_order_id="inflight-1"))
        await asyncio.sleep(0.2)
        await acontrol(cp, "drop", refuse_s=0.2)  # the fill happened; its events die with the connection
        res = await asyncio.wait_for(order, 10)
        assert res.success and res.recovered
        status = await acontrol(cp, "status")
        assert [p["label"] for p in status["positions"]] == ["inflight-1"]
        # the fill the dropped connection lost is told from the deal list, once, as its event would have been
        (fill,) = [e for e in await drain(broker) if isinstance(e, OrderFilled)]
        (deal,) = [o for o in (await acontrol(cp, "orders"))["orders"] if o["client_order_id"] == "inflight-1"]
        assert (fill.client_order_id, fill.ticket, fill.symbol, fill.direction, fill.volume) == (
            "inflight-1", res.ticket, "EURUSD", 1, 0.1)
        assert fill.price == res.price == deal["execution_price"] and fill.commission < 0
        await asyncio.sleep(0.5)
        assert not [e for e in await drain(broker) if isinstance(e, OrderFilled)]
        await broker.close()

    run(scenario())


def test_heartbeats_keep_a_quiet_session_alive_and_the_server_drops_mute_clients(sim_factory: SimFactory) -> None:
    sim = sim_factory(start_bar=START, client_timeout=0.9, heartbeat_interval=0.3)

    async def scenario() -> None:
        good = await connected(sim, heartbeat_interval=0.2)
        mute = Transport(TransportConfig("127.0.0.1", sim.server.port, tls=False, heartbeat_interval=60,
                                         dead_after=60))
        await mute.connect()
        await mute.request(oa.ProtoOAVersionReq())
        reason = await asyncio.wait_for(mute.wait_closed(), 5)  # the server gave up on the mute client
        assert "closed by peer" in str(reason)
        assert good.is_connected  # 0.9 s server timeout, yet our heartbeats kept it open
        assert (await acontrol(sim.server.control_port, "status"))["sessions"] == 1
        await good.close()

    run(scenario())


def test_history_stops_at_the_start_of_the_data(sim_factory: SimFactory, csv_bars) -> None:
    sim = sim_factory(start_bar=30)

    async def scenario() -> None:
        broker = await connected(sim)
        bars = await broker.get_history("EURUSD", "H1", 100)
        assert [b.time for b in bars] == [c.time for c in csv_bars[:30]]
        await broker.close()

    run(scenario())


def test_a_long_outage_is_filled_from_paged_history(sim_factory: SimFactory, eurusd_h1) -> None:
    sim = sim_factory(start_bar=START, history_page=50)

    async def scenario() -> None:
        broker = await connected(sim)
        cp = sim.server.control_port
        await broker.subscribe_bars(["EURUSD"], "H1")
        await acontrol(cp, "advance", bars=2)
        seen: list[Any] = []
        bars = await collect(broker, Bar, 1)
        await acontrol(cp, "drop", refuse_s=0.3)
        await next_event(broker, ConnectionStatus, seen=seen)
        await acontrol(cp, "advance", bars=300)  # more than two weeks, six answers of 50 bars
        await next_event(broker, ConnectionStatus, seen=seen)
        bars += [e for e in seen if isinstance(e, Bar)]
        bars += await collect(broker, Bar, 302 - len(bars))
        first = next(i for i, c in enumerate(eurusd_h1) if c.time == bars[0].time)
        assert all(same_bar(b, c) for b, c in zip(bars, eurusd_h1[first:first + 302], strict=True))
        await broker.close()

    run(scenario())


@pytest.mark.parametrize(("outage_bars", "requests"), [
    (300, 1),  # within one window (35 days of H1): the gap asked down to its last known bar at once, no probe
    (700, 3),  # longer than a window: the first answer dates the server's clock, then paged as usual (probe apart)
])
def test_a_gap_after_a_reconnect_is_asked_in_as_few_requests_as_the_broker_allows(
        sim_factory: SimFactory, eurusd_h1, outage_bars: int, requests: int) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        broker = await connected(sim)
        cp = sim.server.control_port
        await broker.subscribe_bars(["EURUSD"], "H1")
        await acontrol(cp, "advance", bars=2)
        seen: list[Any] = []
        bars = await collect(broker, Bar, 1)
        await acontrol(cp, "drop", refuse_s=0.3)
        await next_event(broker, ConnectionStatus, seen=seen)
        await acontrol(cp, "advance", bars=outage_bars)
        asked = (await acontrol(cp, "status"))["requests"].get("ProtoOAGetTrendbarsReq", 0)
        await next_event(broker, ConnectionStatus, seen=seen)
        bars += [e for e in seen if isinstance(e, Bar)]
        bars += await collect(broker, Bar, outage_bars + 2 - len(bars))
        first = next(i for i, c in enumerate(eurusd_h1) if c.time == bars[0].time)
        assert all(same_bar(b, c) for b, c in zip(bars, eurusd_h1[first:first + outage_bars + 2], strict=True))
        assert (await acontrol(cp, "status"))["requests"]["ProtoOAGetTrendbarsReq"] - asked <= requests
        await broker.close()

    run(scenario())
