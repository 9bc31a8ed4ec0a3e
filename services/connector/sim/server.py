"""The simulator's server: cTrader Open API over TCP or TLS, a replay task and a control port.

Everything runs on one asyncio loop; request handlers and the replay step are plain synchronous functions
over the market cursor and the account, so no locks are needed. SimServer is put together from mixins: the client
connections, their frames and heartbeats (connections.py), the replay clock (clock.py), the state file
(state_file.py), and the request handlers: sessions and tokens (ops_session.py), reference and market data
(ops_market.py), the account and trading (ops_trading.py). Faults (faults.py: drop, delay, swallow, reject,
silence, throttle, partial fills, slippage, token and session ends) are applied where frames enter and leave or
where orders fill (see control.py for the commands). The market model (points, calendars, bars, spot spacing) is
described in services/connector/README.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.connector.ctrader import parsing as units
from services.connector.ctrader import periods as timeframes
from services.connector.ctrader import schemas as proto
from services.connector.sim.account import BUY, SELL, Account
from services.connector.sim.auth import TokenRegistry
from services.connector.sim.catalog import CATALOG, SimSymbol, symbols
from services.connector.sim.certs import load_or_make, server_context
from services.connector.sim.clock import ReplayClock
from services.connector.sim.connections import Connections, Session
from services.connector.sim.faults import Faults
from services.connector.sim.market import Market
from services.connector.sim.ops_market import MarketOps
from services.connector.sim.ops_session import SessionOps
from services.connector.sim.ops_trading import TradingOps
from services.connector.sim.replay import CsvBar, parse_csv
from services.connector.sim.series import check_source
from services.connector.sim.state_file import StateFile

log = logging.getLogger(__name__)
oa = proto.oa
PT = proto.payload_type_of


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
    deal_list_rows: int = 10_000  # most deals one deal-list response holds (hasMore past it), unless maxRows says
    rate_limit: int = 50
    history_rate_limit: int = 5
    synthetic_symbols: int = 0  # SYN01..: EURUSD-like symbols replaying the CSV shifted (catalog.py)
    synthetic_offset_bars: int = 24  # symbol k is k * this many bars ahead; 0 = all aligned



def load_bars(path: str) -> list[CsvBar]:
    with open(path, encoding="utf-8") as f:
        return parse_csv(f.read())


class SimServer(Connections, ReplayClock, StateFile, SessionOps, MarketOps, TradingOps):
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
        self.requests_seen: collections.Counter[str] = collections.Counter()  # requests handled, by message name
        state = self._load_state()
        start, resume = self._start_time(bars, state)
        self.market = Market(bars, self.symbols, self.by_name[config.symbol], self.tf_seconds, now=start)
        self.market.priced = set()  # priced as they are watched: spots subscribed, positions held (clock.py)
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
        self._coalescing = 0
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
            "requests": dict(self.requests_seen),
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
