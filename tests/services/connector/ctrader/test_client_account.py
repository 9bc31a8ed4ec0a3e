"""The cTrader adapter and the simulator's account side over real sockets: order errors as the real server sends
them, typed; a refusal for the rate sent again; partial fills and slippage; commission and swap; a EUR account and
crosses; token expiry, invalidation, refusal and a pair handed in; the server ending a session; market open/closed;
several timeframes of one symbol at once."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
from simclient import ACCOUNT, RawSession, SimFactory, broker_config, connected, next_event, run

from services.connector.ctrader.client import CTraderBroker
from services.connector.ctrader.schemas import oa
from services.connector.ctrader.tokens import StoredTokens, TokenKeeper, TokenPair, TokenStore
from services.connector.port import (
    AuthStatus,
    Bar,
    BrokerConnectionError,
    ConnectionStatus,
    MarketStatus,
    OrderFilled,
    PositionClosed,
)
from services.connector.sim.catalog import CATALOG
from services.connector.sim.control import acontrol
from services.connector.sim.series import served_bars

START = 130  # Monday 2017-01-09 08:00 UTC


def utc(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp())


SATURDAY = utc(2017, 1, 14, 10)
SUNDAY_OPEN = utc(2017, 1, 15, 22)  # New York 17:00


@pytest.mark.parametrize(("name", "request_", "code", "position"), [
    ("off the step", dict(kind="new", volume=150_000), "TRADING_BAD_VOLUME", None),
    ("below the minimum", dict(kind="new", volume=10_000), "TRADING_BAD_VOLUME", None),
    ("absolute stops on a market order", dict(kind="new", volume=100_000, stopLoss=1.0), "TRADING_BAD_STOPS", None),
    ("a stop nearer than slDistance", dict(kind="new", volume=100_000, relativeStopLoss=5),
     "PROTECTION_IS_TOO_CLOSE_TO_MARKET", None),
    ("more margin than free", dict(kind="new", volume=10_000_000_000), "NOT_ENOUGH_MONEY", None),
    ("closing no position", dict(kind="close", positionId=999_999, volume=100_000), "POSITION_NOT_FOUND", 999_999),
    ("amending no position", dict(kind="amend", positionId=999_998, stopLoss=1.0), "POSITION_NOT_FOUND", 999_998),
    ("trading on a Saturday", dict(kind="new", volume=100_000, saturday=True), "MARKET_CLOSED", None),
])
def test_refused_orders_come_as_order_error_events(sim_factory: SimFactory, name, request_, code, position) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        s = await RawSession(sim).open()
        req = dict(request_)
        kind = req.pop("kind")
        if req.pop("saturday", False):
            await s.advance(until=SATURDAY)
        if kind == "new":
            msg = oa.ProtoOANewOrderReq(ctidTraderAccountId=ACCOUNT, symbolId=1, orderType=1, tradeSide=1, **req)
        elif kind == "close":
            msg = oa.ProtoOAClosePositionReq(ctidTraderAccountId=ACCOUNT, **req)
        else:
            msg = oa.ProtoOAAmendPositionSLTPReq(ctidTraderAccountId=ACCOUNT, **req)
        answer = await s.exchange(msg, f"cid-{kind}")
        assert answer.DESCRIPTOR.name == "ProtoOAOrderErrorEvent", name  # not ProtoOAErrorRes: the real server's way
        assert answer.IsInitialized() and (answer.errorCode, answer.ctidTraderAccountId) == (code, ACCOUNT)
        assert answer.description
        assert (answer.positionId if answer.HasField("positionId") else None) == position
        assert (await acontrol(sim.server.control_port, "status"))["deals"] == 0
        await s.close()

    run(scenario())


def test_each_refusal_is_a_typed_result_and_a_closed_market_is_an_event(sim_factory: SimFactory) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        broker = await connected(sim)
        cp = sim.server.control_port
        too_close = await broker.market_order("EURUSD", 1, 0.1, sl_distance=0.00005, client_order_id="close-1")
        assert (too_close.error_code, too_close.broker_code) == ("STOPS_TOO_CLOSE", "PROTECTION_IS_TOO_CLOSE_TO_MARKET")
        broke = await broker.market_order("EURUSD", 1, 900.0, client_order_id="money-1")
        assert (broke.error_code, broke.broker_code) == ("NOT_ENOUGH_MONEY", "NOT_ENOUGH_MONEY") and broke.error
        off_step = await broker.market_order("EURUSD", 1, 0.015, client_order_id="step-1")  # refused before sending
        assert off_step.error_code == "BAD_VOLUME" and "0.01 lots" in off_step.error
        gone = await broker.amend_position(999_998, sl=1.0)
        assert (gone.success, gone.error_code, gone.ticket) == (False, "POSITION_NOT_FOUND", 999_998)
        ok = await broker.market_order("EURUSD", 1, 0.1, client_order_id="weekend-1")
        assert ok.success
        await acontrol(cp, "advance", until=SATURDAY)
        closed_market = await broker.close_position(ok.ticket)
        assert (closed_market.error_code, closed_market.broker_code) == ("MARKET_CLOSED", "MARKET_CLOSED")
        shut = await next_event(broker, MarketStatus)
        assert (shut.symbol, shut.open) == ("EURUSD", False) and broker.market_closed("EURUSD") is not None
        await acontrol(cp, "advance", until=SUNDAY_OPEN + 120)  # the first points of the week
        opened = await next_event(broker, MarketStatus)
        assert (opened.symbol, opened.open) == ("EURUSD", True) and opened.time >= SUNDAY_OPEN
        assert broker.market_closed("EURUSD") is None
        assert (await broker.close_position(ok.ticket)).success
        await broker.close()

    run(scenario())


def test_a_refusal_for_the_request_rate_is_sent_again_after_the_window_once(sim_factory: SimFactory) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        broker = await connected(sim)
        cp = sim.server.control_port
        await acontrol(cp, "throttle", count=1, types=["ProtoOANewOrderReq"])
        t0 = time.monotonic()
        res = await broker.market_order("EURUSD", -1, 0.1, client_order_id="rate-1")
        assert res.success and time.monotonic() - t0 >= 1.0  # waited for the window, then sent again
        orders = (await acontrol(cp, "orders"))["orders"]
        assert [o["client_order_id"] for o in orders] == ["rate-1"]  # one order, not two
        await broker.close()

    run(scenario())


def test_a_partial_fill_is_one_order_at_its_average_price_and_slippage_fills_worse(sim_factory: SimFactory) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        broker = await connected(sim)
        cp = sim.server.control_port
        await acontrol(cp, "partial_fills", count=1, fraction=0.3)
        res = await broker.market_order("EURUSD", 1, 0.1, client_order_id="part-1")
        first, second = await next_event(broker, OrderFilled), await next_event(broker, OrderFilled)
        assert (first.volume, second.volume) == (0.03, 0.07) and first.ticket == second.ticket == res.ticket
        assert second.price == pytest.approx(first.price + 0.00001)  # the rest a point worse
        assert res.success and res.volume == pytest.approx(0.1)
        assert res.price == pytest.approx((0.03 * first.price + 0.07 * second.price) / 0.1)
        assert first.commission < 0 and second.commission < 0
        (pos,) = await broker.get_positions(refresh=True)
        assert pos.volume == pytest.approx(0.1)
        ask = broker.quote("EURUSD").ask
        await acontrol(cp, "slippage", count=1, points=7)
        slipped = await broker.market_order("EURUSD", 1, 0.1, client_order_id="slip-1")
        assert slipped.price == pytest.approx(ask + 0.00007)
        await broker.close()

    run(scenario())


def test_commission_and_swap_are_charged_and_equity_is_net(sim_factory: SimFactory) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        broker = await connected(sim)
        cp = sim.server.control_port
        res = await broker.market_order("EURUSD", 1, 1.0, client_order_id="cost-1")
        fill = await next_event(broker, OrderFilled)
        side = -round(res.price * 100_000 * 30 / 1e6, 2)  # 30 USD per million USD of notional
        assert fill.commission == pytest.approx(side, abs=0.01)
        await acontrol(cp, "advance", until=utc(2017, 1, 10, 1))  # across Monday's 22:00 UTC rollover
        await asyncio.sleep(0.2)
        (pos,) = await broker.get_positions()
        assert pos.swap == pytest.approx(-7.5)  # -0.75 pips a day on 100 000 units
        assert pos.commission == pytest.approx(2 * side, abs=0.02)  # the closing's to come counted too
        acct = await broker.get_account()
        assert acct.equity == pytest.approx(acct.balance + pos.gross_pnl + pos.swap + pos.commission, abs=0.01)
        assert (acct.swap, acct.commission) == (pos.swap, pos.commission)
        before = acct.balance
        assert (await broker.close_position(res.ticket)).success
        closed = await next_event(broker, PositionClosed)
        assert closed.swap == pytest.approx(-7.5) and closed.commission == pytest.approx(2 * side, abs=0.02)
        assert closed.net_profit == pytest.approx(closed.gross_profit + closed.swap + closed.commission)
        assert closed.balance == pytest.approx(before + closed.net_profit)
        deals = await broker.get_deals(since=utc(2017, 1, 9), until=utc(2017, 1, 11))
        assert [d.closing for d in deals] == [False, True]
        assert (deals[1].swap, deals[1].commission, deals[1].balance) == (closed.swap, closed.commission,
                                                                          closed.balance)
        await broker.close()

    run(scenario())


def test_a_deal_list_longer_than_the_servers_page_is_read_whole(sim_factory: SimFactory) -> None:
    """The server answers two deals a page (`hasMore` past them): the window is asked again in halves until each part
    fits, and every deal comes once, in time order."""
    sim = sim_factory(start_bar=START, deal_list_rows=2)

    async def scenario() -> None:
        broker = await connected(sim)
        cp = sim.server.control_port
        for k in range(3):
            res = await broker.market_order("EURUSD", 1 if k % 2 else -1, 0.1, client_order_id=f"page-{k}")
            await acontrol(cp, "advance", ticks=30)
            assert (await broker.close_position(res.ticket)).success
            await acontrol(cp, "advance", ticks=30)
        deals = await broker.get_deals(since=utc(2017, 1, 9), until=utc(2017, 1, 11))
        assert len(deals) == 6 and len({d.deal_id for d in deals}) == 6
        assert [d.closing for d in deals] == [False, True] * 3
        assert [d.time for d in deals] == sorted(d.time for d in deals)
        assert len(await broker.get_deals(since=utc(2017, 1, 9), until=utc(2017, 1, 11), max_rows=2)) == 2
        await broker.close()

    run(scenario())


def test_a_eur_account_converts_crosses_with_the_brokers_chain(sim_factory: SimFactory) -> None:
    sim = sim_factory(start_bar=START, deposit_asset="EUR")

    async def scenario() -> None:
        broker = await connected(sim)
        acct = await broker.get_account(refresh=True)
        assert (acct.currency, acct.balance) == ("EUR", 10_000.0)
        for symbol, chain in (("EURGBP", ["EURGBP"]), ("EURUSD", ["EURUSD"]), ("USDJPY", ["EURJPY"]),
                              ("XAUUSD", ["EURUSD"])):
            rate = await broker.quote_to_deposit(symbol)
            quote = broker.instrument(symbol).quote_asset
            assert broker.instruments.known_chain(quote) == chain
            assert rate == pytest.approx(1 / broker.quote(chain[0]).bid)  # one unit of the quote currency in EUR
        res = await broker.market_order("EURGBP", 1, 0.1, client_order_id="eurgbp-1")
        await acontrol(sim.server.control_port, "advance", ticks=90)
        await asyncio.sleep(0.2)
        (pos,) = await broker.get_positions()
        bid = broker.quote("EURGBP").bid
        assert pos.gross_pnl == pytest.approx((bid - res.price) * 10_000 / bid, abs=0.01)  # GBP -> EUR at 1/EURGBP
        assert (await broker.close_position(res.ticket)).success
        closed = await next_event(broker, PositionClosed)
        assert closed.gross_profit == pytest.approx((closed.close_price - closed.entry_price) * 10_000 / bid, abs=0.01)
        await broker.close()

    run(scenario())


def test_conversion_chains_come_from_the_broker(sim_factory: SimFactory) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        s = await RawSession(sim).open()
        for first, last, names in ((6, 1, ["GBPUSD"]), (4, 2, ["XAUUSD", "EURUSD"]), (1, 1, [])):
            res = await s.request(oa.ProtoOASymbolsForConversionReq(ctidTraderAccountId=ACCOUNT, firstAssetId=first,
                                                                    lastAssetId=last))
            assert res.IsInitialized() and [x.symbolName for x in res.symbol] == names
        await s.close()

    run(scenario())


def keeper_at(tmp_path, pair: TokenPair) -> TokenKeeper:
    return TokenKeeper.open(pair, TokenStore(tmp_path / "broker-tokens.json"), now=time.time())


def test_an_expired_token_is_refreshed_stored_and_the_session_opened_again(sim_factory: SimFactory, tmp_path) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        keeper = keeper_at(tmp_path, TokenPair("sim-token", "sim-refresh"))
        broker = await connected(sim, keeper)
        await acontrol(sim.server.control_port, "expire_token")
        down = await next_event(broker, ConnectionStatus)
        assert not down.connected and "TokenInvalidated" in down.reason
        up = await next_event(broker, ConnectionStatus, timeout=10)
        assert up.connected and keeper.pair.access_token != "sim-token"
        assert TokenStore(tmp_path / "broker-tokens.json").load().pair == keeper.pair  # kept before it was used
        assert (await broker.market_order("EURUSD", 1, 0.1, client_order_id="after-refresh")).success
        await broker.close()

    run(scenario())


@pytest.mark.parametrize("fault", ["account_disconnect", "client_disconnect"])
def test_the_server_ending_a_session_is_a_reconnect(sim_factory: SimFactory, fault: str) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        broker = await connected(sim)
        await acontrol(sim.server.control_port, fault, **({"reason": "maintenance"} if fault.startswith("c") else {}))
        assert not (await next_event(broker, ConnectionStatus)).connected
        assert (await next_event(broker, ConnectionStatus, timeout=10)).connected
        assert (await broker.market_order("EURUSD", 1, 0.1, client_order_id=f"after-{fault}")).success
        await broker.close()

    run(scenario())


def test_a_refused_refresh_waits_for_a_pair_handed_in(sim_factory: SimFactory, tmp_path) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        keeper = keeper_at(tmp_path, TokenPair("sim-token", "sim-refresh"))
        broker = CTraderBroker(broker_config(sim, auth_retry_s=300.0), keeper)
        await broker.connect()
        cp = sim.server.control_port
        await acontrol(cp, "refuse_refresh", count=100)
        await acontrol(cp, "expire_token")
        refused = await next_event(broker, AuthStatus, timeout=10)
        assert not refused.ok and "oracle broker-token" in refused.reason and "refresh" in refused.reason
        assert not broker.is_connected and broker.auth_problem
        await asyncio.sleep(1.0)
        assert not broker.is_connected  # no retry storm: it waits for a person
        issued = await acontrol(cp, "issue_token")  # what the OAuth flow gives the operator
        await acontrol(cp, "clear")
        keeper.store.save(StoredTokens(TokenPair(issued["access_token"], issued["refresh_token"]), None, "operator"))
        assert await broker.reload_credentials()
        assert (await next_event(broker, AuthStatus, timeout=10)).ok
        assert broker.is_connected and not broker.auth_problem
        await broker.close()

    run(scenario())


def test_a_token_that_expired_while_disconnected_is_refreshed_at_the_reconnect(sim_factory: SimFactory,
                                                                              tmp_path) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        keeper = keeper_at(tmp_path, TokenPair("sim-token", "sim-refresh"))
        broker = await connected(sim, keeper)
        cp = sim.server.control_port
        await acontrol(cp, "drop", refuse_s=0.5)
        assert not (await next_event(broker, ConnectionStatus)).connected
        assert (await acontrol(cp, "expire_token"))["sessions_told"] == 0  # nobody is there to hear it
        # the next session's account auth is refused with CH_ACCESS_TOKEN_INVALID: refreshed, then opened again
        up = await next_event(broker, ConnectionStatus, timeout=10)
        assert up.connected and keeper.pair.access_token != "sim-token"
        assert TokenStore(tmp_path / "broker-tokens.json").load().pair == keeper.pair
        assert (await broker.market_order("EURUSD", 1, 0.1, client_order_id="after-expiry-offline")).success
        await broker.close()

    run(scenario())


def test_a_revoked_pair_is_an_auth_problem_not_a_retry_storm(sim_factory: SimFactory, tmp_path) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        keeper = keeper_at(tmp_path, TokenPair("sim-token", "sim-refresh"))
        broker = CTraderBroker(broker_config(sim, auth_retry_s=300.0), keeper)
        await broker.connect()
        await acontrol(sim.server.control_port, "revoke_token")  # access and refresh token both dead
        refused = await next_event(broker, AuthStatus, timeout=10)
        assert not refused.ok and "oracle broker-token" in refused.reason
        assert broker.auth_problem and not broker.is_connected
        # nothing invented or overwritten
        assert (keeper.pair.access_token, keeper.pair.refresh_token) == ("sim-token", "sim-refresh")
        # an order is refused at once with the reason, not after the ready timeout (15 s here)
        started = asyncio.get_running_loop().time()
        with pytest.raises(BrokerConnectionError, match="oracle broker-token"):
            await broker.market_order("EURUSD", 1, 0.1, client_order_id="while-revoked")
        assert asyncio.get_running_loop().time() - started < broker.config.ready_timeout
        assert (await acontrol(sim.server.control_port, "status"))["deals"] == 0
        await broker.close()

    run(scenario())


def test_a_token_is_refreshed_before_it_expires(sim_factory: SimFactory, tmp_path) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        # not due at the session's start (more than the margin left), due two seconds later: refreshed while
        # connected, between orders, then the session is opened again with the new pair
        soon = TokenPair("sim-token", "sim-refresh", time.time() + 3602)
        keeper = keeper_at(tmp_path, soon)
        broker = CTraderBroker(broker_config(sim, token_refresh_margin_s=3600, token_check_s=0.2), keeper)
        await broker.connect()
        down = await next_event(broker, ConnectionStatus, timeout=10)
        assert not down.connected and "refreshed" in down.reason
        assert (await next_event(broker, ConnectionStatus, timeout=10)).connected
        assert keeper.pair.access_token != "sim-token" and keeper.pair.expires_at > time.time() + 86_400
        await broker.close()

    run(scenario())


def test_several_timeframes_of_one_symbol_live_at_once(sim_factory: SimFactory, csv_bars) -> None:
    sim = sim_factory(start_bar=START)

    async def scenario() -> None:
        broker = await connected(sim)
        await broker.subscribe_bars(["EURUSD"], "M15")
        await broker.subscribe_bars(["EURUSD"], "H1")
        start = csv_bars[START].time
        await acontrol(sim.server.control_port, "advance", until=start + 2 * 3600 + 120)
        got: dict[str, list[Bar]] = {"M15": [], "H1": []}
        while len(got["M15"]) < 8 or len(got["H1"]) < 2:
            bar = await next_event(broker, Bar)
            got[bar.timeframe].append(bar)
        for tf, n in (("M15", 8), ("H1", 2)):
            want = served_bars(csv_bars, CATALOG["EURUSD"], tf, start, start + 2 * 3600)
            assert [(b.time, b.open, b.high, b.low, b.close, b.volume) for b in got[tf]] == [
                (b.time, b.open, b.high, b.low, b.close, b.volume) for b in want[:n]]
        assert got["H1"][0].high == max(b.high for b in got["M15"][:4])  # one tick stream: they agree
        await broker.close()

    run(scenario())
