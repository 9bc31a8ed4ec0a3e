"""The simulator's server: cTrader Open API over TCP or TLS, a replay task and a control port.

Everything runs on one asyncio loop; request handlers and the replay step are plain synchronous functions
over the market cursor and the account, so no locks are needed. Faults (drop, delay, swallow, reject,
silence) are applied where frames enter and leave (see control.py for the commands). The market model (points,
calendars, bars, spot spacing) is described in services/connector/README.md.
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
from services.connector.sim.market import Instant, Market, spot_due
from services.connector.sim.replay import CsvBar, parse_csv
from services.connector.sim.series import check_source

log = logging.getLogger(__name__)
oa = proto.oa
om = proto.model
PT = proto.payload_type_of

ORDER_ACCEPTED, ORDER_FILLED, ORDER_REPLACED, ORDER_REJECTED = 2, 3, 4, 7
HISTORY_TYPES = {PT(oa.ProtoOAGetTrendbarsReq), PT(oa.ProtoOAGetTickDataReq)}
STATE_VERSION = 2

# The widest fromTimestamp..toTimestamp a trendbar request may span, per period (ms), as Spotware's own .NET SDK
# has them (spotware/OpenAPI.Net, src/OpenAPI.Net/Helpers/TrendbarsMaximumTime.cs); the Open API documentation's
# "symbol data" page only says the limits depend on the period. Wider -> INCORRECT_BOUNDARIES.
TRENDBAR_SPAN_LIMIT_MS = {
    **dict.fromkeys(("M1", "M2", "M3", "M4", "M5"), 302_400_000),  # 3.5 days
    **dict.fromkeys(("M10", "M15", "M30", "H1"), 21_168_000_000),  # 245 days (35 weeks)
    **dict.fromkeys(("H4", "H12", "D1"), 31_622_400_000),  # 366 days
}


@dataclass
class SimConfig:
    csv_path: str = ""
    symbol: str = "EURUSD"
    timeframe: str = "H1"
    speed: float = 3600.0  # simulated seconds per wall second; 0 = manual (advance through the control port)
    # the configured timeframe (`timeframe`) is what `advance bars` counts and the longest wall time (at `speed`)
    # a closed stretch takes; live trendbars and history serve every period M1..D1
    host: str = "127.0.0.1"
    port: int = 5035  # 0 = any free port
    tls: bool = False
    control_port: int = 0  # 0 = any free port; -1 = no control port
    spot_interval_s: int = 60  # one spot event per symbol per this many seconds of points (bars use every point)
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


def period_seconds(period: int) -> int:
    """A trendbar period's length; the simulator serves the fixed ones (M1..D1), not W1 or MN1."""
    try:
        return timeframes.period_seconds(period)
    except ValueError:
        raise SimError("INVALID_REQUEST", f"trendbar period {period} is not served (M1..D1 only)") from None


class SimServer:
    def __init__(self, config: SimConfig, bars: list[CsvBar] | None = None) -> None:
        self.config = config
        if config.symbol not in CATALOG:
            raise ValueError(f"unknown symbol {config.symbol}; known: {', '.join(CATALOG)}")
        self.period = timeframes.period_of(config.timeframe)
        self.tf_seconds = timeframes.seconds_of(config.timeframe)
        if config.spot_interval_s < 1:
            raise ValueError(f"spot_interval_s must be at least 1 s, not {config.spot_interval_s}")
        bars = bars if bars is not None else load_bars(config.csv_path)
        check_source(bars)
        served = symbols(config.synthetic_symbols, config.synthetic_offset_bars)
        self.symbols: dict[int, SimSymbol] = {s.spec.symbol_id: s for s in served.values()}
        self.by_name = {s.spec.name: s.spec.symbol_id for s in served.values()}
        state = self._load_state()
        start, resume = self._start_time(bars, state)
        self.market = Market(bars, self.symbols, self.by_name[config.symbol], self.tf_seconds, now=start)
        if not resume:  # the start bar is forming with its first instant, as the clock starts
            self.market.step()
        self._saved_bucket = self.market.bar_time
        outside = [b.time for b in bars if CATALOG[config.symbol].calendar.closed_between(b.time, b.time + 3600)]
        if outside:
            log.warning(
                "%d bars of the CSV lie (partly) where %s's calendar is closed (the first at %d): no point "
                "is replayed there", len(outside), config.symbol, outside[0]
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

    def _start_time(self, bars: list[CsvBar], state: dict[str, Any] | None) -> tuple[int, bool]:
        """Where the clock starts, and whether exactly there (a state file's cursor); else the start bar's open,
        where its first instant is then processed."""
        cfg = self.config
        if state is not None:
            path = cfg.state_path
            if "cursor_time" in state:
                t = int(state["cursor_time"])
                if not bars[0].time <= t <= bars[-1].time + 3600:
                    raise ValueError(f"state file {path}: cursor_time {t} is outside the CSV's bars")
                return t, True
            if "bar_index" not in state:
                raise ValueError(f"state file {path} has no replay cursor (cursor_time or bar_index)")
            index = int(state["bar_index"])
            if not 0 <= index < len(bars):
                raise ValueError(f"state file {path}: bar_index {index} is outside the CSV's {len(bars)} bars")
            log.warning(
                "state file %s is from an older simulator (its cursor is a bar index): resuming at the first point "
                "of bar %d (time %d); it is rewritten in the current format", path, index, bars[index].time
            )
            return bars[index].time, False
        start = cfg.start_bar
        if cfg.start_time is not None:
            start = next((i for i, b in enumerate(bars) if b.time >= cfg.start_time), len(bars) - 1)
        if not 0 <= start < len(bars):
            raise ValueError(f"start bar {start} is outside the CSV's {len(bars)} bars")
        return bars[start].time, False

    def _save_state(self) -> None:
        path = self.config.state_path
        if not path:
            return
        data = {
            "version": STATE_VERSION,
            "cursor_time": self.market.now,
            "bar_index": self.market.bar_index,
            "account": self.account.to_json(),
        }
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
        for sid in msg.symbolId:  # the latest prices, even while the market is closed
            self._send(s, self._spot_event(s, sid))

    def _on_unsubscribe_spots(self, s: Session, msg: Any, cid: str) -> None:
        s.spots.difference_update(msg.symbolId)
        s.trendbars = {t for t in s.trendbars if t[0] not in msg.symbolId}
        self._send(s, oa.ProtoOAUnsubscribeSpotsRes(ctidTraderAccountId=msg.ctidTraderAccountId), cid)

    def _on_subscribe_trendbar(self, s: Session, msg: Any, cid: str) -> None:
        self._check_symbols([msg.symbolId])
        if msg.symbolId not in s.spots:
            raise SimError("NOT_SUBSCRIBED_TO_SPOTS", "subscribe to spots first")
        period_seconds(msg.period)
        s.trendbars.add((msg.symbolId, msg.period))
        self._send(s, oa.ProtoOASubscribeLiveTrendbarRes(ctidTraderAccountId=msg.ctidTraderAccountId), cid)
        self._send(s, self._spot_event(s, msg.symbolId))

    def _on_unsubscribe_trendbar(self, s: Session, msg: Any, cid: str) -> None:
        s.trendbars.discard((msg.symbolId, msg.period))
        self._send(s, oa.ProtoOAUnsubscribeLiveTrendbarRes(ctidTraderAccountId=msg.ctidTraderAccountId), cid)

    def _spot_event(self, s: Session, symbol_id: int) -> Any:
        """The symbol's latest point as a spot event, with the forming bar of every period the session
        subscribed for it; timestamp = the point's time."""
        ev = oa.ProtoOASpotEvent(ctidTraderAccountId=self.account.account_id, symbolId=symbol_id)
        last = self.market.last_point(symbol_id)
        if last is None:  # no point yet (the start of the data): nothing to quote
            return ev
        bid, ask = self.market.bid_ask(symbol_id) or (last.price, last.price)
        ev.bid, ev.ask = units.price_to_wire(bid), units.price_to_wire(ask)
        if s.spot_timestamps:
            ev.timestamp = units.seconds_to_ms(last.time)
        for sid, period in sorted(s.trendbars):
            if sid == symbol_id:
                bar = self.market.forming(symbol_id, period_seconds(period))
                if bar is not None:
                    ev.trendbar.append(wire.trendbar(bar, period))
        return ev

    def _on_trendbars(self, s: Session, msg: Any, cid: str) -> None:
        self._check_symbols([msg.symbolId])
        seconds = period_seconds(msg.period)
        limit_ms = TRENDBAR_SPAN_LIMIT_MS[timeframes.name_of(msg.period)]
        from_ms = msg.fromTimestamp if msg.HasField("fromTimestamp") else 0
        to_ms = msg.toTimestamp if msg.HasField("toTimestamp") else 0
        if from_ms > to_ms:
            raise SimError("INCORRECT_BOUNDARIES", f"fromTimestamp {from_ms} is after toTimestamp {to_ms}")
        if to_ms - from_ms > limit_ms:
            raise SimError(
                "INCORRECT_BOUNDARIES",
                f"fromTimestamp..toTimestamp spans {to_ms - from_ms} ms; {timeframes.name_of(msg.period)} "
                f"allows at most {limit_ms} ms",
            )
        limit = min(msg.count or self.config.history_page, self.config.history_page)
        bars = self.market.history(msg.symbolId, seconds, -(-from_ms // 1000), to_ms // 1000, limit)
        res = oa.ProtoOAGetTrendbarsRes(
            ctidTraderAccountId=msg.ctidTraderAccountId,
            period=msg.period,
            timestamp=units.seconds_to_ms(self.market.now),
            symbolId=msg.symbolId,
        )
        res.trendbar.extend(wire.trendbar(b, msg.period) for b in bars)
        self._send(s, res, cid)

    # ---- trading
    @property
    def now_ms(self) -> int:
        return units.seconds_to_ms(self.market.now)

    def _rate(self, symbol_id: int) -> float:
        """Quote currency -> USD at the current prices: from the symbol's own price, or a USD pair's for a cross."""
        spec = self.symbols[symbol_id].spec
        if spec.quote_asset == "USD":
            return 1.0
        if spec.base_asset == "USD":
            via: list[tuple[int, bool]] = [(symbol_id, True)]
        else:
            via = [(o.spec.symbol_id, o.spec.base_asset == "USD") for o in self.symbols.values()
                   if {o.spec.base_asset, o.spec.quote_asset} == {spec.quote_asset, "USD"}]
        for sid, inverse in via:
            quote = self.market.bid_ask(sid)
            if quote is not None:
                return 1.0 / quote[0] if inverse else quote[0]
        raise SimError("NO_QUOTES", f"no price converting {spec.quote_asset} into USD for {spec.name}")

    def _tradable_quote(self, symbol_id: int) -> tuple[float, float]:
        """The bid/ask an order on the symbol executes at, or why it cannot execute now."""
        name = self.symbols[symbol_id].spec.name
        if not self.market.is_open(symbol_id):
            raise SimError("MARKET_CLOSED", f"{name} does not trade at {self.market.now} (its trading calendar)")
        quote = self.market.bid_ask(symbol_id)
        if quote is None:
            raise SimError("NO_QUOTES", f"{name} has no price yet")
        return quote

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
        bid, ask = self._tradable_quote(msg.symbolId)
        rule = self.faults.take(self.faults.reject, None) if self.faults.reject else None
        if rule is not None:
            order = om.ProtoOAOrder(
                orderId=self.account._new_id(),
                orderType=1,
                orderStatus=3,
                tradeData=wire.trade_data(
                    msg.symbolId, msg.volume, msg.tradeSide, self.now_ms, msg.label, msg.comment
                ),
            )
            if msg.clientOrderId:
                order.clientOrderId = msg.clientOrderId
            code = rule.get("code", "NOT_ENOUGH_MONEY")
            self._broadcast(self._execution(ORDER_REJECTED, order=order, error_code=code), s, cid)
            return
        fill = self.account.open_market(
            spec,
            msg.tradeSide,
            msg.volume,
            bid,
            ask,
            self._rate(msg.symbolId),
            self.now_ms,
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
        bid, ask = self._tradable_quote(pos.symbol_id)
        fill = self.account.close(msg.positionId, msg.volume, bid, ask, self._rate(pos.symbol_id), self.now_ms)
        self._publish_fill(fill, s, cid)

    def _on_amend(self, s: Session, msg: Any, cid: str) -> None:
        pos = self.account.positions.get(msg.positionId)
        if pos is None:
            raise SimError("POSITION_NOT_FOUND", f"position {msg.positionId} not found")
        bid, ask = self._tradable_quote(pos.symbol_id)
        sl = msg.stopLoss if msg.HasField("stopLoss") else None
        tp = msg.takeProfit if msg.HasField("takeProfit") else None
        pos = self.account.amend(msg.positionId, sl, tp, bid, ask, self.now_ms)
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
        """Process the next `ticks` instants now; returns how many were processed (fewer at the end of the data)."""
        done = 0
        while done < ticks and self._step():
            done += 1
        return done

    def advance_bars(self, bars: int = 1) -> int:
        """Advance to the first instant of the bar (configured timeframe) `bars` ahead: the bars before close.
        Returns the number of instants processed."""
        target = self.market.bar_target(bars)
        if target is not None:
            return self.advance_until(target)
        done = 0  # the data ends first: to its last point
        while self._step():
            done += 1
        return done

    def advance_until(self, t: int) -> int:
        """Process every instant up to time `t` and set the clock to `t` (within the data)."""
        if t < self.market.now:
            raise ValueError(f"until {t} is before the server time {self.market.now}")
        done = 0
        while (nxt := self.market.next_time()) is not None and nxt <= t:
            self._step()
            done += 1
        if t > self.market.now:
            self.market.advance_clock(t)
            self._after_clock()
        return done

    def _step(self) -> bool:
        inst = self.market.step()
        if inst is None:
            return False
        self._on_instant(inst)
        self._after_clock()
        return True

    def _after_clock(self) -> None:
        if self.market.bar_time != self._saved_bucket:  # the state file follows the clock bar by bar
            self._saved_bucket = self.market.bar_time
            self._save_state()

    def _on_instant(self, inst: Instant) -> None:
        """The points of one instant: stops and take-profits they reach, then the spot events that are due."""
        for sid, point in inst.points:
            bid, ask = point.price, self.market.ask_of(sid, point.price)
            for pid in self.account.triggered(sid, bid, ask):
                pos = self.account.positions[pid]
                fill = self.account.close(pid, pos.volume, bid, ask, self._rate(sid), self.now_ms, server_event=True)
                self._publish_fill(fill, None, "")
        interval = self.config.spot_interval_s
        for s in list(self.sessions):
            if not s.spots:
                continue
            periods: dict[int, list[int]] = {}
            for sid, period in s.trendbars:
                periods.setdefault(sid, []).append(timeframes.period_seconds(period))
            for (sid, point), before, after in zip(inst.points, inst.previous, inst.following, strict=True):
                if sid in s.spots and (
                    interval <= 60 or spot_due(before, point.time, after, interval, periods.get(sid, ()))
                ):
                    self._send(s, self._spot_event(s, sid))

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
            "server_time_ms": self.now_ms,
            "server_time": m.now,
            "bar_index": m.bar_index,
            "bar_time": m.bar_time,
            "timeframe": self.config.timeframe,
            "bars": len(m.times),
            "next_point_time": m.next_time(),
            "paused": self.paused,
            "speed": self.speed,
            "spot_interval_s": self.config.spot_interval_s,
            "port": self.port,
            "control_port": self.control_port,
            "sessions": len(self.sessions),
            "symbols": {
                sym.spec.name: {"open": m.is_open(sid), "next_point": m.next_point_time(sid)}
                for sid, sym in self.symbols.items()
            },
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
