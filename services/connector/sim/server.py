"""The simulator's server: cTrader Open API over TCP or TLS, a replay task and a control port.

Everything runs on one asyncio loop; request handlers and the replay tick are plain synchronous functions
over the market cursor and the account, so no locks are needed. Faults (drop, delay, swallow, reject,
silence) are applied where frames enter and leave (see control.py for the commands).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from services.connector.ctrader import parsing as units
from services.connector.ctrader import periods as timeframes
from services.connector.ctrader import schemas as proto
from services.connector.ctrader.ratelimit import SlidingWindow
from services.connector.sim import wire
from services.connector.sim.account import BUY, SELL, Account, Fill, SimError
from services.connector.sim.catalog import ASSET_IDS, CATALOG, SimSymbol, symbols
from services.connector.sim.certs import self_signed_pem, server_context
from services.connector.sim.market import Market
from services.connector.sim.replay import CsvBar, parse_csv

log = logging.getLogger(__name__)
oa = proto.oa
om = proto.model
PT = proto.payload_type_of

ORDER_ACCEPTED, ORDER_FILLED, ORDER_REPLACED, ORDER_REJECTED = 2, 3, 4, 7
HISTORY_TYPES = {PT(oa.ProtoOAGetTrendbarsReq), PT(oa.ProtoOAGetTickDataReq)}


@dataclass
class SimConfig:
    csv_path: str = ""
    symbol: str = "EURUSD"
    timeframe: str = "H1"
    speed: float = 3600.0  # simulated seconds per wall second; 0 = manual (advance through the control port)
    host: str = "127.0.0.1"
    port: int = 5035  # 0 = any free port
    tls: bool = False
    control_port: int = 0  # 0 = any free port; -1 = no control port
    ticks_per_bar: int = 4
    start_bar: int = 0
    start_time: int | None = None  # first bar opening at or after this Unix time (overrides start_bar)
    state_path: str | None = None
    client_id: str = "sim-client"
    client_secret: str = "sim-secret"
    access_token: str = "sim-token"
    account_id: int = 1_000_001
    trader_login: int = 5_000_001
    balance: float = 10_000.0
    money_digits: int = 2
    leverage_in_cents: int = 10_000
    heartbeat_interval: float = 10.0
    client_timeout: float = 30.0
    history_page: int = 1000  # most bars one trendbar response holds
    rate_limit: int = 50
    history_rate_limit: int = 5
    synthetic_symbols: int = 0  # SYN01..: EURUSD-like symbols replaying the CSV shifted (catalog.py)
    synthetic_offset_bars: int = 24  # symbol k is k * this many bars ahead; 0 = all aligned


@dataclass
class Faults:
    silent_until: float = 0.0
    refuse_until: float = 0.0
    delay: list[dict[str, Any]] = field(default_factory=list)  # {"seconds", "count", "types"}
    swallow: list[dict[str, Any]] = field(default_factory=list)  # {"count", "types"}
    reject: list[dict[str, Any]] = field(default_factory=list)  # {"count", "code"}

    @staticmethod
    def take(rules: list[dict[str, Any]], type_name: str | None) -> dict[str, Any] | None:
        for rule in rules:
            types = rule.get("types")
            if types and type_name not in types:
                continue
            rule["count"] = rule.get("count", 1) - 1
            if rule["count"] <= 0:
                rules.remove(rule)
            return rule
        return None


@dataclass
class Session:
    writer: asyncio.StreamWriter
    app_authed: bool = False
    accounts: set[int] = field(default_factory=set)
    spots: set[int] = field(default_factory=set)
    spot_timestamps: bool = False
    trendbars: set[tuple[int, int]] = field(default_factory=set)
    last_rx: float = 0.0
    limit: SlidingWindow = field(default_factory=lambda: SlidingWindow(50))
    history_limit: SlidingWindow = field(default_factory=lambda: SlidingWindow(5))
    closed: bool = False


def load_bars(path: str) -> list[CsvBar]:
    with open(path, encoding="utf-8") as f:
        return parse_csv(f.read())


class SimServer:
    def __init__(self, config: SimConfig, bars: list[CsvBar] | None = None) -> None:
        self.config = config
        if config.symbol not in CATALOG:
            raise ValueError(f"unknown symbol {config.symbol}; known: {', '.join(CATALOG)}")
        self.period = timeframes.period_of(config.timeframe)
        self.tf_seconds = timeframes.seconds_of(config.timeframe)
        bars = bars if bars is not None else load_bars(config.csv_path)
        served = symbols(config.synthetic_symbols, config.synthetic_offset_bars)
        self.symbols: dict[int, SimSymbol] = {s.spec.symbol_id: s for s in served.values()}
        self.by_name = {s.spec.name: s.spec.symbol_id for s in served.values()}
        state = self._load_state()
        start = config.start_bar
        if config.start_time is not None:
            start = 0
            while start < len(bars) - 1 and bars[start].time < config.start_time:
                start += 1
        if state is not None:
            start = state["bar_index"]
        self.market = Market(
            bars,
            self.tf_seconds,
            self.symbols,
            self.by_name[config.symbol],
            config.ticks_per_bar,
            bar_index=start,
        )
        self.account = (
            Account.from_json(state["account"])
            if state is not None
            else Account(
                config.account_id,
                units.money_to_wire(config.balance, config.money_digits),
                config.money_digits,
                config.leverage_in_cents,
            )
        )
        self.faults = Faults()
        self.paused = config.speed <= 0
        self.speed = config.speed
        self.sessions: list[Session] = []
        self.cert_pem: bytes | None = None
        self._server: asyncio.base_events.Server | None = None
        self._control: asyncio.base_events.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self.port = config.port
        self.control_port = config.control_port
        self._handlers: dict[int, Callable[[Session, Any, str], None]] = {
            PT(oa.ProtoOAVersionReq): self._on_version,
            PT(oa.ProtoOAApplicationAuthReq): self._on_app_auth,
            PT(oa.ProtoOAGetAccountListByAccessTokenReq): self._on_accounts,
            PT(oa.ProtoOAAccountAuthReq): self._on_account_auth,
            PT(oa.ProtoOAAssetListReq): self._on_assets,
            PT(oa.ProtoOASymbolsListReq): self._on_symbols,
            PT(oa.ProtoOASymbolByIdReq): self._on_symbol_by_id,
            PT(oa.ProtoOATraderReq): self._on_trader,
            PT(oa.ProtoOAReconcileReq): self._on_reconcile,
            PT(oa.ProtoOASubscribeSpotsReq): self._on_subscribe_spots,
            PT(oa.ProtoOAUnsubscribeSpotsReq): self._on_unsubscribe_spots,
            PT(oa.ProtoOASubscribeLiveTrendbarReq): self._on_subscribe_trendbar,
            PT(oa.ProtoOAUnsubscribeLiveTrendbarReq): self._on_unsubscribe_trendbar,
            PT(oa.ProtoOAGetTrendbarsReq): self._on_trendbars,
            PT(oa.ProtoOANewOrderReq): self._on_new_order,
            PT(oa.ProtoOAClosePositionReq): self._on_close_position,
            PT(oa.ProtoOAAmendPositionSLTPReq): self._on_amend,
            PT(oa.ProtoOADealListReq): self._on_deal_list,
        }

    # ---- lifecycle
    async def start(self) -> None:
        cfg = self.config
        ctx = None
        if cfg.tls:
            self.cert_pem, key_pem = self_signed_pem()
            ctx = server_context(self.cert_pem, key_pem)
        self._server = await asyncio.start_server(self._on_connect, cfg.host, cfg.port, ssl=ctx)
        self.port = self._server.sockets[0].getsockname()[1]
        if cfg.control_port >= 0:
            self._control = await asyncio.start_server(self._on_control, "127.0.0.1", cfg.control_port)
            self.control_port = self._control.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._replay_loop()), loop.create_task(self._heartbeat_loop())]
        log.info(
            "sim-broker on %s:%d (tls=%s), control on 127.0.0.1:%d, %s %s from bar %d",
            cfg.host,
            self.port,
            cfg.tls,
            self.control_port,
            cfg.symbol,
            cfg.timeframe,
            self.market.bar_index,
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for srv in (self._server, self._control):
            if srv is not None:
                srv.close()
        for s in list(self.sessions):
            self._drop(s)
        for srv in (self._server, self._control):
            if srv is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(srv.wait_closed(), 1.0)
        self._save_state()

    # ---- persistence
    def _load_state(self) -> dict[str, Any] | None:
        path = self.config.state_path
        if not path or not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def _save_state(self) -> None:
        path = self.config.state_path
        if not path:
            return
        data = {"bar_index": self.market.bar_index, "account": self.account.to_json()}
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)

    # ---- connections
    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self.faults.refuse_until:
            writer.transport.abort()
            return
        session = Session(
            writer,
            last_rx=loop.time(),
            limit=SlidingWindow(self.config.rate_limit),
            history_limit=SlidingWindow(self.config.history_rate_limit),
        )
        self.sessions.append(session)
        decoder = proto.FrameDecoder()
        try:
            while not session.closed:
                data = await reader.read(65536)
                if not data:
                    break
                session.last_rx = loop.time()
                for body in decoder.feed(data):
                    self._on_frame(session, proto.decode_envelope(body))
        except (ConnectionError, OSError, proto.FrameError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._drop(session)

    def _drop(self, session: Session) -> None:
        session.closed = True
        if session in self.sessions:
            self.sessions.remove(session)
        with contextlib.suppress(Exception):
            session.writer.transport.abort()

    def _silent(self) -> bool:
        return asyncio.get_running_loop().time() < self.faults.silent_until

    def _send(self, session: Session, msg: Message, cid: str = "") -> None:
        if session.closed or self._silent():
            return
        rule = self.faults.take(self.faults.delay, msg.DESCRIPTOR.name) if self.faults.delay else None
        frame = proto.encode_frame(proto.encode_envelope(msg, cid or None))
        if rule is not None:
            asyncio.get_running_loop().call_later(rule.get("seconds", 1.0), self._write, session, frame)
        else:
            self._write(session, frame)

    def _write(self, session: Session, frame: bytes) -> None:
        if session.closed or self._silent():
            return
        try:
            session.writer.write(frame)
        except Exception:  # the peer went away; the read side will notice
            self._drop(session)

    def _error(self, session: Session, cid: str, code: str, description: str = "") -> None:
        msg = oa.ProtoOAErrorRes(errorCode=code, description=description)
        if self.account.account_id in session.accounts:
            msg.ctidTraderAccountId = self.account.account_id
        self._send(session, msg, cid)

    def _on_frame(self, session: Session, env: Any) -> None:
        if self._silent():
            return
        ptype = env.payloadType
        cid = env.clientMsgId if env.HasField("clientMsgId") else ""
        if ptype == proto.HEARTBEAT:
            return
        msg = proto.unwrap(env)
        name = msg.DESCRIPTOR.name if msg is not None else None
        if self.faults.swallow and self.faults.take(self.faults.swallow, name):
            log.info("fault: swallowed %s", name)
            return
        now = asyncio.get_running_loop().time()
        if session.limit.delay(now) > 0 or (ptype in HISTORY_TYPES and session.history_limit.delay(now) > 0):
            self._error(session, cid, "REQUEST_FREQUENCY_EXCEEDED", "rate limit exceeded")
            return
        session.limit.record(now)
        if ptype in HISTORY_TYPES:
            session.history_limit.record(now)
        handler = self._handlers.get(ptype)
        if msg is None or handler is None:
            self._send(
                session,
                proto.common.ProtoErrorRes(
                    errorCode="UNSUPPORTED_MESSAGE", description=f"payload type {ptype}"
                ),
                cid,
            )
            return
        open_types = (PT(oa.ProtoOAVersionReq), PT(oa.ProtoOAApplicationAuthReq))
        if ptype not in open_types and not session.app_authed:
            self._error(session, cid, "CH_CLIENT_NOT_AUTHENTICATED", "application is not authorised")
            return
        acct = getattr(msg, "ctidTraderAccountId", None)
        if acct is not None and ptype != PT(oa.ProtoOAAccountAuthReq) and acct not in session.accounts:
            self._error(session, cid, "ACCOUNT_NOT_AUTHORIZED", f"account {acct} is not authorised")
            return
        try:
            handler(session, msg, cid)
        except SimError as exc:
            self._error(session, cid, exc.code, exc.description)
        except Exception as exc:  # a handler bug answers an error instead of killing the session
            log.exception("handler for %s failed", name)
            err = proto.common.ProtoErrorRes(errorCode="UNKNOWN_ERROR", description=repr(exc))
            self._send(session, err, cid)

    # ---- auth and reference data
    def _on_version(self, s: Session, msg: Any, cid: str) -> None:
        self._send(s, oa.ProtoOAVersionRes(version="oracle-sim-1"), cid)

    def _on_app_auth(self, s: Session, msg: Any, cid: str) -> None:
        if s.app_authed:
            raise SimError("CH_CLIENT_ALREADY_AUTHENTICATED", "application already authorised")
        if msg.clientId != self.config.client_id or msg.clientSecret != self.config.client_secret:
            raise SimError("CH_CLIENT_AUTH_FAILURE", "invalid client id or secret")
        s.app_authed = True
        self._send(s, oa.ProtoOAApplicationAuthRes(), cid)

    def _on_accounts(self, s: Session, msg: Any, cid: str) -> None:
        if msg.accessToken != self.config.access_token:
            raise SimError("CH_ACCESS_TOKEN_INVALID", "invalid access token")
        res = oa.ProtoOAGetAccountListByAccessTokenRes(accessToken=msg.accessToken)
        res.ctidTraderAccount.add(
            ctidTraderAccountId=self.account.account_id, isLive=False, traderLogin=self.config.trader_login
        )
        self._send(s, res, cid)

    def _on_account_auth(self, s: Session, msg: Any, cid: str) -> None:
        if msg.accessToken != self.config.access_token:
            raise SimError("CH_ACCESS_TOKEN_INVALID", "invalid access token")
        if msg.ctidTraderAccountId != self.account.account_id:
            raise SimError(
                "CH_CTID_TRADER_ACCOUNT_NOT_FOUND",
                f"account {msg.ctidTraderAccountId} not found for this token",
            )
        s.accounts.add(msg.ctidTraderAccountId)
        self._send(s, oa.ProtoOAAccountAuthRes(ctidTraderAccountId=msg.ctidTraderAccountId), cid)

    def _on_assets(self, s: Session, msg: Any, cid: str) -> None:
        res = oa.ProtoOAAssetListRes(ctidTraderAccountId=msg.ctidTraderAccountId)
        for name, asset_id in ASSET_IDS.items():
            res.asset.add(assetId=asset_id, name=name, displayName=name, digits=2)
        self._send(s, res, cid)

    def _on_symbols(self, s: Session, msg: Any, cid: str) -> None:
        res = oa.ProtoOASymbolsListRes(ctidTraderAccountId=msg.ctidTraderAccountId)
        res.symbol.extend(wire.light_symbol(sym) for sym in self.symbols.values())
        self._send(s, res, cid)

    def _on_symbol_by_id(self, s: Session, msg: Any, cid: str) -> None:
        missing = [i for i in msg.symbolId if i not in self.symbols]
        if missing:
            raise SimError("SYMBOL_NOT_FOUND", f"unknown symbol ids {missing}")
        res = oa.ProtoOASymbolByIdRes(ctidTraderAccountId=msg.ctidTraderAccountId)
        res.symbol.extend(wire.symbol(self.symbols[i]) for i in msg.symbolId)
        self._send(s, res, cid)

    def _on_trader(self, s: Session, msg: Any, cid: str) -> None:
        acc = self.account
        trader = om.ProtoOATrader(
            ctidTraderAccountId=acc.account_id,
            balance=acc.balance,
            depositAssetId=1,
            leverageInCents=acc.leverage_in_cents,
            moneyDigits=acc.money_digits,
            traderLogin=self.config.trader_login,
            accountType=0,
            brokerName="Oracle Sim",
            isLimitedRisk=False,
        )
        self._send(s, oa.ProtoOATraderRes(ctidTraderAccountId=acc.account_id, trader=trader), cid)

    def _on_reconcile(self, s: Session, msg: Any, cid: str) -> None:
        res = oa.ProtoOAReconcileRes(ctidTraderAccountId=self.account.account_id)
        res.position.extend(
            wire.position(p, wire.POSITION_OPEN, self.account.money_digits)
            for p in self.account.positions.values()
        )
        self._send(s, res, cid)

    # ---- market data
    def _check_symbols(self, ids: Any) -> None:
        missing = [i for i in ids if i not in self.symbols]
        if missing:
            raise SimError("SYMBOL_NOT_FOUND", f"unknown symbol ids {missing}")

    def _on_subscribe_spots(self, s: Session, msg: Any, cid: str) -> None:
        self._check_symbols(msg.symbolId)
        if any(i in s.spots for i in msg.symbolId):
            raise SimError("ALREADY_SUBSCRIBED", "already subscribed to spots")
        s.spots.update(msg.symbolId)
        s.spot_timestamps = s.spot_timestamps or msg.subscribeToSpotTimestamp
        self._send(s, oa.ProtoOASubscribeSpotsRes(ctidTraderAccountId=msg.ctidTraderAccountId), cid)
        for sid in msg.symbolId:
            self._send(s, self._spot_event(s, sid))

    def _on_unsubscribe_spots(self, s: Session, msg: Any, cid: str) -> None:
        s.spots.difference_update(msg.symbolId)
        s.trendbars = {t for t in s.trendbars if t[0] not in msg.symbolId}
        self._send(s, oa.ProtoOAUnsubscribeSpotsRes(ctidTraderAccountId=msg.ctidTraderAccountId), cid)

    def _on_subscribe_trendbar(self, s: Session, msg: Any, cid: str) -> None:
        self._check_symbols([msg.symbolId])
        if msg.symbolId not in s.spots:
            raise SimError("NOT_SUBSCRIBED_TO_SPOTS", "subscribe to spots first")
        if msg.period != self.period:
            raise SimError("INVALID_REQUEST", f"the simulator replays {self.config.timeframe} only")
        s.trendbars.add((msg.symbolId, msg.period))
        self._send(s, oa.ProtoOASubscribeLiveTrendbarRes(ctidTraderAccountId=msg.ctidTraderAccountId), cid)
        self._send(s, self._spot_event(s, msg.symbolId))

    def _on_unsubscribe_trendbar(self, s: Session, msg: Any, cid: str) -> None:
        s.trendbars.discard((msg.symbolId, msg.period))
        self._send(s, oa.ProtoOAUnsubscribeLiveTrendbarRes(ctidTraderAccountId=msg.ctidTraderAccountId), cid)

    def _spot_event(self, s: Session, symbol_id: int) -> Any:
        bid, ask = self.market.bid_ask(symbol_id)
        ev = oa.ProtoOASpotEvent(
            ctidTraderAccountId=self.account.account_id,
            symbolId=symbol_id,
            bid=units.price_to_wire(bid),
            ask=units.price_to_wire(ask),
        )
        if s.spot_timestamps:
            ev.timestamp = self.market.server_ms
        if (symbol_id, self.period) in s.trendbars:
            ev.trendbar.append(wire.trendbar(self.market.forming_bar(symbol_id), self.period))
        return ev

    def _on_trendbars(self, s: Session, msg: Any, cid: str) -> None:
        self._check_symbols([msg.symbolId])
        if msg.period != self.period:
            raise SimError("INVALID_REQUEST", f"the simulator replays {self.config.timeframe} only")
        if msg.fromTimestamp > msg.toTimestamp:
            raise SimError("INCORRECT_BOUNDARIES", "fromTimestamp after toTimestamp")
        bars = self.market.history(
            msg.symbolId,
            -(-msg.fromTimestamp // 1000),
            msg.toTimestamp // 1000,
            msg.count,
            self.config.history_page,
        )
        res = oa.ProtoOAGetTrendbarsRes(
            ctidTraderAccountId=msg.ctidTraderAccountId,
            period=msg.period,
            timestamp=self.market.server_ms,
            symbolId=msg.symbolId,
        )
        res.trendbar.extend(wire.trendbar(b, self.period) for b in bars)
        self._send(s, res, cid)

    # ---- trading
    def _rate(self, symbol_id: int) -> float:
        spec = self.symbols[symbol_id].spec
        bid, _ = self.market.bid_ask(symbol_id)
        return units.quote_to_deposit_rate(spec.base_asset, spec.quote_asset, "USD", bid)

    def _execution(
        self,
        execution_type: int,
        fill: Fill | None = None,
        order: Any = None,
        position: Any = None,
        deal: Any = None,
        error_code: str = "",
        server_event: bool = False,
    ) -> Any:
        ev = oa.ProtoOAExecutionEvent(
            ctidTraderAccountId=self.account.account_id,
            executionType=execution_type,
            isServerEvent=server_event,
        )
        for fld, value in (("order", order), ("position", position), ("deal", deal)):
            if value is not None:
                getattr(ev, fld).CopyFrom(value)
        if error_code:
            ev.errorCode = error_code
        return ev

    def _broadcast(self, msg: Message, origin: Session | None = None, cid: str = "") -> None:
        """Send an account event to every session authorised on the account (clientMsgId to the origin)."""
        for s in list(self.sessions):
            if self.account.account_id in s.accounts:
                self._send(s, msg, cid if s is origin else "")

    def _publish_fill(self, fill: Fill, origin: Session | None, cid: str) -> None:
        md = self.account.money_digits
        status = wire.POSITION_CLOSED if fill.closed else wire.POSITION_OPEN
        pos = wire.position(fill.position, status, md)
        accepted = wire.order(fill.order, wire.ORDER_ACCEPTED_STATUS)
        self._broadcast(
            self._execution(ORDER_ACCEPTED, order=accepted, position=pos, server_event=fill.server_event),
            origin,
            cid,
        )
        filled = wire.order(fill.order, wire.ORDER_FILLED_STATUS)
        self._broadcast(
            self._execution(
                ORDER_FILLED,
                order=filled,
                position=pos,
                deal=wire.deal(fill.deal, md),
                server_event=fill.server_event,
            ),
            origin,
            cid,
        )
        self._save_state()

    def _on_new_order(self, s: Session, msg: Any, cid: str) -> None:
        self._check_symbols([msg.symbolId])
        if msg.orderType != 1:
            raise SimError("TRADING_NOT_ALLOWED", "the simulator fills MARKET orders only")
        if msg.HasField("stopLoss") or msg.HasField("takeProfit"):
            raise SimError("TRADING_BAD_STOPS", "absolute SL/TP are not supported for MARKET orders")
        spec = self.symbols[msg.symbolId].spec
        rule = self.faults.take(self.faults.reject, None) if self.faults.reject else None
        if rule is not None:
            order = om.ProtoOAOrder(
                orderId=self.account._new_id(),
                orderType=1,
                orderStatus=3,
                tradeData=wire.trade_data(
                    msg.symbolId, msg.volume, msg.tradeSide, self.market.server_ms, msg.label, msg.comment
                ),
            )
            if msg.clientOrderId:
                order.clientOrderId = msg.clientOrderId
            code = rule.get("code", "NOT_ENOUGH_MONEY")
            self._broadcast(self._execution(ORDER_REJECTED, order=order, error_code=code), s, cid)
            return
        bid, ask = self.market.bid_ask(msg.symbolId)
        fill = self.account.open_market(
            spec,
            msg.tradeSide,
            msg.volume,
            bid,
            ask,
            self._rate(msg.symbolId),
            self.market.server_ms,
            msg.relativeStopLoss,
            msg.relativeTakeProfit,
            msg.label,
            msg.comment,
            msg.clientOrderId,
        )
        self._publish_fill(fill, s, cid)

    def _on_close_position(self, s: Session, msg: Any, cid: str) -> None:
        pos = self.account.positions.get(msg.positionId)
        if pos is None:
            raise SimError("POSITION_NOT_FOUND", f"position {msg.positionId} not found")
        bid, ask = self.market.bid_ask(pos.symbol_id)
        fill = self.account.close(
            msg.positionId, msg.volume, bid, ask, self._rate(pos.symbol_id), self.market.server_ms
        )
        self._publish_fill(fill, s, cid)

    def _on_amend(self, s: Session, msg: Any, cid: str) -> None:
        pos = self.account.positions.get(msg.positionId)
        if pos is None:
            raise SimError("POSITION_NOT_FOUND", f"position {msg.positionId} not found")
        bid, ask = self.market.bid_ask(pos.symbol_id)
        sl = msg.stopLoss if msg.HasField("stopLoss") else None
        tp = msg.takeProfit if msg.HasField("takeProfit") else None
        pos = self.account.amend(msg.positionId, sl, tp, bid, ask, self.market.server_ms)
        self._save_state()
        self._broadcast(
            self._execution(
                ORDER_REPLACED, position=wire.position(pos, wire.POSITION_OPEN, self.account.money_digits)
            ),
            s,
            cid,
        )

    def _on_deal_list(self, s: Session, msg: Any, cid: str) -> None:
        deals = [d for d in self.account.deals if msg.fromTimestamp <= d.timestamp_ms <= msg.toTimestamp]
        max_rows = msg.maxRows or 10_000
        res = oa.ProtoOADealListRes(
            ctidTraderAccountId=self.account.account_id, hasMore=len(deals) > max_rows
        )
        res.deal.extend(wire.deal(d, self.account.money_digits) for d in deals[:max_rows])
        self._send(s, res, cid)

    # ---- replay
    def advance(self, ticks: int = 1) -> int:
        """Process `ticks` ticks now; returns how many were processed (fewer at the end of the data)."""
        done = 0
        for _ in range(ticks):
            if self.market.at_end:
                break
            new_bar = self.market.step()
            self._on_tick()
            if new_bar:
                self._save_state()
            done += 1
        return done

    def advance_bars(self, bars: int = 1) -> int:
        """Advance to the first tick of the bar `bars` ahead; returns the number of ticks processed."""
        target = min(self.market.bar_index + bars, len(self.market.bars) - 1)
        done = 0
        while self.market.bar_index < target:
            if not self.advance(1):
                break
            done += 1
        return done

    def _on_tick(self) -> None:
        for sid in self.symbols:
            bid, ask = self.market.bid_ask(sid)
            for pid in self.account.triggered(sid, bid, ask):
                pos = self.account.positions[pid]
                fill = self.account.close(
                    pid, pos.volume, bid, ask, self._rate(sid), self.market.server_ms, server_event=True
                )
                self._publish_fill(fill, None, "")
        for s in list(self.sessions):
            for sid in s.spots:
                self._send(s, self._spot_event(s, sid))

    async def _replay_loop(self) -> None:
        while True:
            if self.paused or self.speed <= 0:
                self._wake.clear()
                await self._wake.wait()
                continue
            nxt = self.market.next_tick_ms()
            if nxt is None:
                self.paused = True
                log.info("replay reached the end of the data")
                continue
            # a gap (weekend) is replayed as one bar period of wall time
            gap_s = min((nxt - self.market.server_ms) / 1000, self.tf_seconds)
            await asyncio.sleep(gap_s / self.speed)
            if not self.paused:
                self.advance(1)

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(self.config.heartbeat_interval, self.config.client_timeout / 3))
            now = loop.time()
            for s in list(self.sessions):
                if now - s.last_rx > self.config.client_timeout:
                    log.info("closing a silent client")
                    self._drop(s)
                else:
                    self._send(s, proto.common.ProtoHeartbeatEvent())

    # ---- control
    async def _on_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from services.connector.sim.control import handle  # circular at import time otherwise

        try:
            while line := await reader.readline():
                try:
                    req = json.loads(line)
                    reply = handle(self, req)
                except Exception as exc:  # a bad command must not kill the server
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                writer.write((json.dumps(reply) + "\n").encode())
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def status(self) -> dict[str, Any]:
        m = self.market
        return {
            "server_time_ms": m.server_ms,
            "bar_index": m.bar_index,
            "tick_index": m.tick_index,
            "bar_time": m.bars[m.bar_index].time,
            "bars": len(m.bars),
            "paused": self.paused,
            "speed": self.speed,
            "port": self.port,
            "control_port": self.control_port,
            "sessions": len(self.sessions),
            "balance": units.money_from_wire(self.account.balance, self.account.money_digits),
            "positions": [
                {
                    "position_id": p.position_id,
                    "symbol_id": p.symbol_id,
                    "side": {BUY: "BUY", SELL: "SELL"}.get(p.trade_side, "?"),
                    "volume": p.volume,
                    "entry_price": p.entry_price,
                    "stop_loss": p.stop_loss,
                    "take_profit": p.take_profit,
                    "label": p.label,
                }
                for p in self.account.positions.values()
            ],
            "deals": len(self.account.deals),
        }

    def wake(self) -> None:
        self._wake.set()


class SimThread:
    """Runs a SimServer on its own event loop in a daemon thread (tests, embedded runs)."""

    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="sim-broker", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> SimThread:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run `fn` on the server's loop and return its result."""

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
