"""The simulator's server: cTrader Open API over TCP or TLS, a replay task and a control port.

Everything runs on one asyncio loop; request handlers and the replay step are plain synchronous functions
over the market cursor and the account, so no locks are needed. The handlers live in three mixins: sessions and
tokens (ops_session.py), reference and market data (ops_market.py), the account and trading (ops_trading.py).
Faults (drop, delay, swallow, reject, silence, throttle, partial fills, slippage, token and session ends) are
applied where frames enter and leave or where orders fill (see control.py for the commands). The market model
(points, calendars, bars, spot spacing) is described in services/connector/README.md.
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

from common import durable
from services.connector.ctrader import parsing as units
from services.connector.ctrader import periods as timeframes
from services.connector.ctrader import schemas as proto
from services.connector.ctrader.ratelimit import SlidingWindow
from services.connector.sim.account import BUY, SELL, Account, SimError
from services.connector.sim.auth import TokenRegistry
from services.connector.sim.catalog import CATALOG, SimSymbol, symbols
from services.connector.sim.certs import load_or_make, server_context
from services.connector.sim.market import Instant, Market, spot_due
from services.connector.sim.ops_market import MarketOps
from services.connector.sim.ops_session import SessionOps
from services.connector.sim.ops_trading import TradingOps
from services.connector.sim.replay import CsvBar, parse_csv
from services.connector.sim.series import check_source

log = logging.getLogger(__name__)
oa = proto.oa
om = proto.model
PT = proto.payload_type_of

HISTORY_TYPES = {PT(oa.ProtoOAGetTrendbarsReq), PT(oa.ProtoOAGetTickDataReq)}
# requests answered, when refused, with ProtoOAOrderErrorEvent (as the real server does) instead of ProtoOAErrorRes
ORDER_TYPES = {PT(oa.ProtoOANewOrderReq), PT(oa.ProtoOAClosePositionReq), PT(oa.ProtoOAAmendPositionSLTPReq)}
# requests a session may send before its account is authorised
OPEN_TYPES = {PT(oa.ProtoOAVersionReq), PT(oa.ProtoOAApplicationAuthReq)}
STATE_VERSION = 3


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
    cert_path: str | None = None  # TLS: the certificate to serve (made and kept there on the first start)
    control_port: int = 0  # 0 = any free port; -1 = no control port
    spot_interval_s: int = 60  # one spot event per symbol per this many seconds of points (bars use every point)
    start_bar: int = 0
    start_time: int | None = None  # first bar opening at or after this Unix time (overrides start_bar)
    state_path: str | None = None
    client_id: str = "sim-client"
    client_secret: str = "sim-secret"
    access_token: str = "sim-token"
    refresh_token: str = "sim-refresh"
    token_lifetime_s: int = 2_628_000  # an access token's life on the server's (replay) clock
    account_id: int = 1_000_001
    trader_login: int = 5_000_001
    balance: float = 10_000.0
    deposit_asset: str = "USD"
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
    throttle: list[dict[str, Any]] = field(default_factory=list)  # {"count", "types"}: REQUEST_FREQUENCY_EXCEEDED
    partial: list[dict[str, Any]] = field(default_factory=list)  # {"count", "fraction"}: market orders in 2 deals
    slippage: list[dict[str, Any]] = field(default_factory=list)  # {"count", "points"}: fills that much worse
    order_error: list[dict[str, Any]] = field(default_factory=list)  # {"count", "code"}: ProtoOAOrderErrorEvent

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
    tokens: dict[int, str] = field(default_factory=dict)  # account -> the access token it was authorised with
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


class SimServer(SessionOps, MarketOps, TradingOps):
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
        self._history_lines = 0  # lines of the history file the last state save accounts for
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
            Account.from_json(state["account"], self._load_history(state))
            if state is not None
            else Account(
                config.account_id,
                units.money_to_wire(config.balance, config.money_digits),
                config.money_digits,
                config.leverage_in_cents,
                config.deposit_asset,
            )
        )
        if self.account.deposit_asset not in {a for s in self.symbols.values()
                                               for a in (s.spec.base_asset, s.spec.quote_asset)}:
            raise ValueError(f"deposit asset {self.account.deposit_asset!r} is not an asset of the simulator's symbols")
        if state is not None and "tokens" in state:
            self.tokens = TokenRegistry.from_json(state["tokens"])
        else:  # a state file of an older simulator knew no tokens: the configured pair, issued now
            self.tokens = TokenRegistry.initial(config.access_token, config.refresh_token, config.token_lifetime_s,
                                                units.seconds_to_ms(self.market.now))
        self._announced: set[str] = set()  # access tokens whose expiry the sessions were told
        self._next_expiry_ms: int | None = None
        self._swapped_until: int | None = self.market.now
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
            PT(oa.ProtoOARefreshTokenReq): self._on_refresh_token,
            PT(oa.ProtoOAAssetListReq): self._on_assets,
            PT(oa.ProtoOASymbolsListReq): self._on_symbols,
            PT(oa.ProtoOASymbolByIdReq): self._on_symbol_by_id,
            PT(oa.ProtoOASymbolsForConversionReq): self._on_conversion,
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
            self.cert_pem, key_pem = load_or_make(cfg.cert_path)
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

    @property
    def history_path(self) -> str | None:
        """The deals and orders, appended (JSON lines) beside the state file."""
        return f"{self.config.state_path}.history.jsonl" if self.config.state_path else None

    def _load_history(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        """The history the state file accounts for (`history_lines`); lines appended by a save that a crash cut
        before its state was written are dropped (the file is cut back to match)."""
        path = self.history_path
        count = int(state.get("history_lines", 0))
        if path is None or not os.path.exists(path):
            if count:
                raise ValueError(f"state file {self.config.state_path} counts {count} history lines but {path} is "
                                 "missing")
            return []
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
        if len(lines) < count:
            raise ValueError(f"{path} has {len(lines)} lines; the state file counts {count}")
        if len(lines) > count:
            log.warning("%s: %d line(s) after the last state save dropped", path, len(lines) - count)
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(lines[:count])
        self._history_lines = count
        return [json.loads(line) for line in lines[:count]]

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
        """The deals and orders made since the last save are appended to the history file; the rest (small: the
        clock, balance, open positions, tokens) is rewritten. O(1) however long the account's history grows."""
        path = self.config.state_path
        if not path:
            self.account.take_history()
            return
        new = self.account.take_history()
        if new:
            with open(self.history_path, "a", encoding="utf-8") as f:
                f.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in new)
            self._history_lines += len(new)
        data = {
            "version": STATE_VERSION,
            "cursor_time": self.market.now,
            "bar_index": self.market.bar_index,
            "account": self.account.to_json(),
            "history_lines": self._history_lines,
            "tokens": self.tokens.to_json(),
        }
        durable.write_atomic(path, json.dumps(data), fsync=False)  # rewritten at the next save: no fsync, as ever

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

    def _drop_later(self, session: Session) -> None:
        """Close a session once what was just sent to it has gone out."""
        asyncio.get_running_loop().call_soon(self._drop, session)

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

    def _order_error(self, session: Session, cid: str, exc: SimError, msg: Any) -> None:
        """A refused order, close or amendment: ProtoOAOrderErrorEvent with the request's clientMsgId."""
        ev = oa.ProtoOAOrderErrorEvent(ctidTraderAccountId=self.account.account_id, errorCode=exc.code,
                                       description=exc.description)
        if getattr(msg, "positionId", 0):
            ev.positionId = msg.positionId
        self._send(session, ev, cid)

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
        throttled = self.faults.throttle and self.faults.take(self.faults.throttle, name)
        if throttled or session.limit.delay(now) > 0 or (
                ptype in HISTORY_TYPES and session.history_limit.delay(now) > 0):
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
        if ptype not in OPEN_TYPES and not session.app_authed:
            self._error(session, cid, "CH_CLIENT_NOT_AUTHENTICATED", "application is not authorised")
            return
        acct = getattr(msg, "ctidTraderAccountId", None)
        if acct is not None and ptype != PT(oa.ProtoOAAccountAuthReq) and acct not in session.accounts:
            self._error(session, cid, "ACCOUNT_NOT_AUTHORIZED", f"account {acct} is not authorised")
            return
        try:
            rule = self.faults.take(self.faults.order_error, None) if (
                ptype in ORDER_TYPES and self.faults.order_error) else None
            if rule is not None:
                raise SimError(rule["code"], "refused (an injected fault)")
            handler(session, msg, cid)
        except SimError as exc:
            if ptype in ORDER_TYPES:
                self._order_error(session, cid, exc, msg)
            else:
                self._error(session, cid, exc.code, exc.description)
        except Exception as exc:  # a handler bug answers an error instead of killing the session
            log.exception("handler for %s failed", name)
            err = proto.common.ProtoErrorRes(errorCode="UNKNOWN_ERROR", description=repr(exc))
            self._send(session, err, cid)

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
        self.check_token_expiry()
        self._swaps_until(self.market.now)
        if self.market.bar_time != self._saved_bucket:  # the state file follows the clock bar by bar
            self._saved_bucket = self.market.bar_time
            self._save_state()

    def _on_instant(self, inst: Instant) -> None:
        """The points of one instant: stops and take-profits they reach, then the spot events that are due."""
        self._stops_at(inst)
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
