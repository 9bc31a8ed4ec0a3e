"""Conformance session: Spotware's official Python client (`ctrader_open_api`, Twisted) drives the simulator
through every message the connector uses, errors included, and checks each answer against the protobuf contract.

Run by test_sim_conformance.py in a process of its own (the test process must never import Twisted); not a test
module itself. It talks to a running simulator (TLS) and to its control port, and writes one JSON report:

    python conformance_session.py --port P --control-port C --report out.json

The official client is used as shipped: `Client(host, port, TcpProtocol)` connects through its own
`ssl:host:port` endpoint (Twisted's TLS client endpoint, which does not verify the certificate, so the simulator's
self-signed one needs nothing), and every frame is decoded with the package's `Protobuf.extract`. Nothing of the
client is patched. The one setting chosen is the constructor's `numberOfMessagesToSendPerSecond` (default 5): its
send queue is drained once a second, so each step of the session (a batch of requests, then a VersionReq whose
answer marks that every frame the batch caused has been read) takes about a second; 25 lets a batch go out in one
drain. One heartbeat is sent explicitly with the protocol's own `heartbeat()` (the protocol also answers each of
the server's heartbeats with one).

Each step is a batch sent in one drain: the server handles requests in the order they arrive, so a batch may hold
requests that depend on earlier ones of the batch (application auth, then account auth, ...); only what needs an
answer's content (a position id, a new token) waits for the next step. The send loop fires at most twice within a
second (once late after the reactor was busy, then on time), so at most three steps reach the server within one
second: historical-data requests are kept to two a step and four in any three consecutive steps, under the
server's 5 per second (the rate refusal is checked with the simulator's `throttle` fault, not by racing its clock).

The report: {"checks": [{"id", "request", "expected", "got", "ok"}], "sent": {type: count},
"received": {type: count}, "client": {...}, "error": null or a traceback}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import sys
import traceback
import zoneinfo
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ctrader_open_api import Client, Protobuf, TcpProtocol
from ctrader_open_api.messages import OpenApiCommonMessages_pb2 as cm
from ctrader_open_api.messages import OpenApiCommonModelMessages_pb2 as cmm
from ctrader_open_api.messages import OpenApiMessages_pb2 as oa
from ctrader_open_api.messages import OpenApiModelMessages_pb2 as om
from twisted.internet import defer, reactor

from services.connector.sim.control import control  # plain sockets: no Twisted, no protobuf of ours

SENDS_PER_SECOND = 25
ANSWER_TIMEOUT_S = 15
SESSION_TIMEOUT_S = 90  # a guard: a session that hangs still writes what it checked
PRICE_SCALE = 100_000  # spot and trendbar prices, relative SL/TP: 1/100000 of a price unit
BUY, SELL = om.BUY, om.SELL
PERIOD_S = {om.M1: 60, om.M2: 120, om.M3: 180, om.M4: 240, om.M5: 300, om.M10: 600, om.M15: 900, om.M30: 1800,
            om.H1: 3600, om.H4: 14_400, om.H12: 43_200, om.D1: 86_400}
ERROR_CODES = set(cmm.ProtoErrorCode.keys()) | set(om.ProtoOAErrorCode.keys())
# plausible price ranges (real price units) of the symbols traded here: a wire price read in the wrong unit
# (1/100000 as a double, or a double scaled) falls far outside
PRICE_RANGE = {"EURUSD": (0.8, 1.6), "GBPUSD": (1.0, 2.0)}
WEEK_S = 7 * 86_400
SATURDAY, SUNDAY = 6, 7


def name_of(msg: Any) -> str:
    return msg.DESCRIPTOR.name


def short(msg: Any, limit: int = 300) -> str:
    text = " ".join(str(msg).split())
    return text if len(text) <= limit else text[:limit] + " ..."


def tb_bar(tb: Any) -> tuple[int, int, int, int, int, int]:
    """(open time s, open, high, low, close, volume) of a trendbar, prices in 1/100000."""
    return (tb.utcTimestampInMinutes * 60, tb.low + tb.deltaOpen, tb.low + tb.deltaHigh, tb.low,
            tb.low + tb.deltaClose, tb.volume)


def contract_problems(msg: Any, path: str = "") -> list[str]:
    """What a decoded message breaks of the contract: required fields missing, fields this version of the
    definitions does not know (an enum value out of range lands there in proto2), enum values out of range."""
    where = path or name_of(msg)
    problems = []
    if not msg.IsInitialized():
        problems.append(f"{where}: required fields missing: {', '.join(msg.FindInitializationErrors())}")
    if len(msg.UnknownFields()):
        problems.append(f"{where}: {len(msg.UnknownFields())} unknown field(s) (an enum value out of range?)")
    for fd, value in msg.ListFields():
        values = list(value) if fd.label == fd.LABEL_REPEATED else [value]
        if fd.enum_type is not None:
            bad = [v for v in values if v not in fd.enum_type.values_by_number]
            if bad:
                problems.append(f"{where}.{fd.name}: {bad} not in {fd.enum_type.name}")
        elif fd.message_type is not None:
            for i, sub in enumerate(values):
                problems.extend(contract_problems(sub, f"{where}.{fd.name}" + (f"[{i}]" if len(values) > 1 else "")))
    return problems


@dataclass
class Frame:
    seq: int
    name: str
    cid: str
    msg: Any


@dataclass
class Step:
    label: str
    frames: list[Frame]
    requests: dict[str, Any]

    def cid(self, key: str) -> str:
        return f"{self.label}:{key}"

    def answers(self, key: str) -> list[Frame]:
        return [f for f in self.frames if f.cid == self.cid(key)]

    @property
    def events(self) -> list[Frame]:
        return [f for f in self.frames if not f.cid]

    def events_of(self, name: str) -> list[Any]:
        return [f.msg for f in self.events if f.name == name]


@dataclass
class Quote:
    bid: int = 0
    ask: int = 0
    timestamp: int = 0


@dataclass
class Book:
    """What the session learnt, for the checks that follow."""

    assets: dict[int, str] = field(default_factory=dict)
    symbols: dict[str, Any] = field(default_factory=dict)  # name -> ProtoOALightSymbol
    specs: dict[int, Any] = field(default_factory=dict)  # id -> ProtoOASymbol
    specs_names: dict[int, str] = field(default_factory=dict)  # id -> name
    money_digits: int = 2
    deposit_asset: int = 0
    leverage_in_cents: int = 0
    balance: int = 0
    quotes: dict[int, Quote] = field(default_factory=dict)
    live_periods: dict[int, set[int]] = field(default_factory=dict)  # symbol id -> periods subscribed now

    def sid(self, name: str) -> int:
        return self.symbols[name].symbolId

    def digits(self, symbol_id: int) -> int:
        return self.specs[symbol_id].digits

    def units(self, volume: int) -> float:
        return volume / 100

    def money(self, amount: float) -> int:
        return round(amount * 10**self.money_digits)


class Conformance:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.account = args.account
        self.checks: list[dict[str, Any]] = []
        self.frames: list[Frame] = []
        self.sent: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.book = Book()
        self.connected = defer.Deferred()
        self.closed = defer.Deferred()
        self.frames_after_close = 0
        self.heartbeat_waiter: defer.Deferred | None = None
        self.client = Client(args.host, args.port, TcpProtocol, numberOfMessagesToSendPerSecond=SENDS_PER_SECOND)
        self.client.setConnectedCallback(self._on_connected)
        self.client.setDisconnectedCallback(self._on_disconnected)
        self.client.setMessageReceivedCallback(self._on_message)

    # ---- the wire
    def _on_connected(self, client: Client) -> None:
        if not self.connected.called:
            self.connected.callback(None)

    def _on_disconnected(self, client: Client, reason: Any) -> None:
        if not self.closed.called:  # `reason` is a Failure: passed inside a list, or the Deferred would fail
            self.closed.callback([reason])

    def _on_message(self, client: Client, env: Any) -> None:
        if self.closed.called:
            self.frames_after_close += 1
        try:
            msg = Protobuf.extract(env)
        except Exception as exc:  # a payload type the official definitions do not know
            self.check(f"frame.{env.payloadType}", "-", "a payload type of the official definitions",
                       f"payloadType {env.payloadType}: {exc!r}", False)
            return
        name = name_of(msg)
        cid = env.clientMsgId if env.HasField("clientMsgId") else ""
        self.received[name] += 1
        self.frames.append(Frame(len(self.frames), name, cid, msg))
        if name == "ProtoOASpotEvent":
            q = self.book.quotes.setdefault(msg.symbolId, Quote())
            q.bid = msg.bid if msg.HasField("bid") else q.bid
            q.ask = msg.ask if msg.HasField("ask") else q.ask
            q.timestamp = msg.timestamp if msg.HasField("timestamp") else q.timestamp
        if name == "ProtoHeartbeatEvent" and self.heartbeat_waiter is not None and not self.heartbeat_waiter.called:
            self.heartbeat_waiter.callback(None)

    def send(self, msg: Any, cid: str) -> defer.Deferred:
        self.sent[name_of(msg)] += 1
        d = self.client.send(msg, clientMsgId=cid, responseTimeoutInSeconds=ANSWER_TIMEOUT_S)
        d.addErrback(lambda failure: None)  # a missing answer is reported by the checks, by clientMsgId
        return d

    @defer.inlineCallbacks
    def step(self, label: str, requests: list[tuple[str, Any]]) -> Any:
        """Send a batch in one drain and wait for the answer of a VersionReq sent last: the server answers in order,
        so by then every frame the batch caused has been read."""
        start = len(self.frames)
        for key, msg in requests:
            self.send(msg, f"{label}:{key}")
        self.sent["ProtoOAVersionReq"] += 1
        yield self.client.send(oa.ProtoOAVersionReq(), clientMsgId=f"{label}:sync",
                               responseTimeoutInSeconds=ANSWER_TIMEOUT_S)
        frames = [f for f in self.frames[start:] if f.cid != f"{label}:sync"]
        return Step(label, frames, dict(requests))

    def control(self, cmd: str, **args: Any) -> dict[str, Any]:
        """One command on the simulator's control port (a JSON line each way); blocking, and short."""
        return control(self.args.control_port, cmd, timeout=30, **args)

    def server_ms(self) -> int:
        return int(self.control("status")["server_time_ms"])

    # ---- checks
    def check(self, cid: str, request: str, expected: str, got: Any, ok: bool) -> bool:
        self.checks.append({"id": cid, "request": request, "expected": expected, "got": str(got), "ok": bool(ok)})
        return bool(ok)

    def answer(self, st: Step, key: str, expect: str, code: str | set[str] | None = None) -> list[Any]:
        """The frames answering request `key` of step `st` (same clientMsgId, in order), the first checked: its
        type, and for an error its code. Empty when the first is of another type (its content is then not checked)."""
        req = st.requests[key]
        request = f"{name_of(req)} {short(req, 160)}".strip()
        frames = st.answers(key)
        want = expect + (f" errorCode={code if isinstance(code, str) else '|'.join(sorted(code))}" if code else "")
        want += f", clientMsgId {st.cid(key)} echoed"
        if not frames:
            events = ", ".join(f.name for f in st.events) or "none"
            self.check(st.cid(key), request, want, f"no frame with that clientMsgId (events meanwhile: {events})",
                       False)
            return []
        first = frames[0].msg
        got = frames[0].name
        ok = got == expect
        if "errorCode" in first.DESCRIPTOR.fields_by_name and first.HasField("errorCode"):
            got += f" errorCode={first.errorCode} ({first.description})"
            codes = {code} if isinstance(code, str) else (code or set())
            ok = ok and (not codes or first.errorCode in codes) and first.errorCode in ERROR_CODES
        elif code:
            ok = False
        self.check(st.cid(key), request, want, got, ok)
        return [f.msg for f in frames] if frames[0].name == expect else []

    def order_error(self, st: Step, key: str, code: str, position_id: int | None = None) -> None:
        """A refused order, close or amendment: ProtoOAOrderErrorEvent with the code, and nothing else."""
        got = self.answer(st, key, "ProtoOAOrderErrorEvent", code)
        if not got:
            return
        ev = got[0]
        req = name_of(st.requests[key])
        self.check(f"{st.cid(key)}.fields", req, "ctidTraderAccountId = the account, a description",
                   short(ev), ev.ctidTraderAccountId == self.account and bool(ev.description))
        if position_id is not None:
            self.check(f"{st.cid(key)}.positionId", req, f"positionId {position_id}",
                       ev.positionId if ev.HasField("positionId") else "unset",
                       ev.HasField("positionId") and ev.positionId == position_id)
        self.check(f"{st.cid(key)}.only", req, "no other frame for the refused request",
                   [name_of(m) for m in got], len(got) == 1)

    def price_ok(self, symbol_id: int, price: float, at_digits: bool = True) -> bool:
        """A double in real price units, in the symbol's range, at the symbol's digits (a fill's; an average
        price may be finer)."""
        digits = self.book.digits(symbol_id)
        name = self.book.specs_names[symbol_id]
        lo, hi = PRICE_RANGE.get(name, (0.0, float("inf")))
        return lo < price < hi and (not at_digits or abs(price - round(price, digits)) < 1e-9)

    def wire_price_ok(self, symbol_id: int, value: int) -> bool:
        """An integer in 1/100000, at the symbol's digits, in the symbol's range."""
        digits = self.book.digits(symbol_id)
        name = self.book.specs_names[symbol_id]
        lo, hi = PRICE_RANGE.get(name, (0.0, float("inf")))
        return lo < value / PRICE_SCALE < hi and value % 10 ** (5 - digits) == 0

    # ---- the session
    @defer.inlineCallbacks
    def run(self) -> Any:
        self.client.startService()
        yield self.connected
        yield self.session_and_reference()
        yield self.market_data()
        pos = yield self.orders()
        partial = yield self.amend_and_partial(pos)
        yield self.rollover_and_close(pos, partial)
        yield self.tokens(partial)
        yield self.account_disconnect()
        yield self.weekend(partial)
        yield self.heartbeats()
        yield self.client_disconnect()
        self.final_checks()

    # 1. version, authorisation, reference data, account
    @defer.inlineCallbacks
    def session_and_reference(self) -> Any:
        a = self.args
        st = yield self.step("s1", [
            ("version", oa.ProtoOAVersionReq()),
            ("early", oa.ProtoOATraderReq(ctidTraderAccountId=self.account)),
            ("app_bad", oa.ProtoOAApplicationAuthReq(clientId=a.client_id, clientSecret="not-the-secret")),
            ("app", oa.ProtoOAApplicationAuthReq(clientId=a.client_id, clientSecret=a.client_secret)),
            ("app_again", oa.ProtoOAApplicationAuthReq(clientId=a.client_id, clientSecret=a.client_secret)),
            ("accounts", oa.ProtoOAGetAccountListByAccessTokenReq(accessToken=a.access_token)),
            ("auth_bad", oa.ProtoOAAccountAuthReq(ctidTraderAccountId=self.account, accessToken="not-a-token")),
            ("auth", oa.ProtoOAAccountAuthReq(ctidTraderAccountId=self.account, accessToken=a.access_token)),
            ("assets", oa.ProtoOAAssetListReq(ctidTraderAccountId=self.account)),
            ("symbols", oa.ProtoOASymbolsListReq(ctidTraderAccountId=self.account)),
            ("trader", oa.ProtoOATraderReq(ctidTraderAccountId=self.account)),
            ("reconcile", oa.ProtoOAReconcileReq(ctidTraderAccountId=self.account)),
            ("deals", oa.ProtoOADealListReq(ctidTraderAccountId=self.account, fromTimestamp=0,
                                            toTimestamp=2_147_483_646_000)),
        ])
        version = self.answer(st, "version", "ProtoOAVersionRes")
        if version:
            self.check("s1:version.value", "ProtoOAVersionReq", "a version string", version[0].version,
                       bool(version[0].version))
        self.answer(st, "early", "ProtoOAErrorRes", "CH_CLIENT_NOT_AUTHENTICATED")
        self.answer(st, "app_bad", "ProtoOAErrorRes", "CH_CLIENT_AUTH_FAILURE")
        self.answer(st, "app", "ProtoOAApplicationAuthRes")
        self.answer(st, "app_again", "ProtoOAErrorRes", "CH_CLIENT_ALREADY_AUTHENTICATED")
        accounts = self.answer(st, "accounts", "ProtoOAGetAccountListByAccessTokenRes")
        if accounts:
            res = accounts[0]
            listed = {acc.ctidTraderAccountId: acc for acc in res.ctidTraderAccount}
            acc = listed.get(self.account)
            self.check("s1:accounts.content", "ProtoOAGetAccountListByAccessTokenReq",
                       f"the token echoed; account {self.account} listed with isLive and traderLogin", short(res),
                       res.accessToken == a.access_token and acc is not None and acc.HasField("isLive")
                       and acc.traderLogin > 0)
        self.answer(st, "auth_bad", "ProtoOAErrorRes", "CH_ACCESS_TOKEN_INVALID")
        auth = self.answer(st, "auth", "ProtoOAAccountAuthRes")
        if auth:
            self.check("s1:auth.account", "ProtoOAAccountAuthReq", f"ctidTraderAccountId {self.account}",
                       auth[0].ctidTraderAccountId, auth[0].ctidTraderAccountId == self.account)
        assets = self.answer(st, "assets", "ProtoOAAssetListRes")
        if assets:
            self.book.assets = {x.assetId: x.name for x in assets[0].asset}
            self.check("s1:assets.content", "ProtoOAAssetListReq", "assets with unique ids and names",
                       self.book.assets, len(self.book.assets) == len(assets[0].asset) > 0
                       and all(self.book.assets.values()))
        symbols = self.answer(st, "symbols", "ProtoOASymbolsListRes")
        if symbols:
            light = list(symbols[0].symbol)
            self.book.symbols = {s.symbolName: s for s in light}
            bad = [short(s) for s in light if s.baseAssetId not in self.book.assets
                   or s.quoteAssetId not in self.book.assets]
            self.check("s1:symbols.content", "ProtoOASymbolsListReq",
                       "unique symbol ids and names, EURUSD and GBPUSD among them, base/quote assets listed",
                       bad or sorted(self.book.symbols), not bad and len({s.symbolId for s in light}) == len(light)
                       == len(self.book.symbols) and {"EURUSD", "GBPUSD"} <= set(self.book.symbols))
        trader = self.answer(st, "trader", "ProtoOATraderRes")
        if trader:
            t = trader[0].trader
            self.book.money_digits, self.book.deposit_asset = t.moneyDigits, t.depositAssetId
            self.book.leverage_in_cents, self.book.balance = t.leverageInCents, t.balance
            self.check("s1:trader.content", "ProtoOATraderReq",
                       "the account's trader: balance > 0 in 10^moneyDigits, depositAssetId an asset, leverage "
                       "in cents, accountType", short(t),
                       trader[0].ctidTraderAccountId == t.ctidTraderAccountId == self.account and t.balance > 0
                       and t.HasField("moneyDigits") and t.depositAssetId in self.book.assets
                       and t.leverageInCents >= 100 and t.HasField("accountType"))
        rec = self.answer(st, "reconcile", "ProtoOAReconcileRes")
        if rec:
            self.check("s1:reconcile.empty", "ProtoOAReconcileReq", "no position, no order on a new account",
                       short(rec[0]), not rec[0].position and not rec[0].order)
        deals = self.answer(st, "deals", "ProtoOADealListRes")
        if deals:
            self.check("s1:deals.empty", "ProtoOADealListReq", "no deal yet, hasMore false", short(deals[0]),
                       not deals[0].deal and deals[0].hasMore is False)

    # 2. symbol details, conversion, history, live data
    @defer.inlineCallbacks
    def market_data(self) -> Any:
        b = self.book
        eur, gbp = b.sid("EURUSD"), b.sid("GBPUSD")
        ids = sorted(s.symbolId for s in b.symbols.values())
        now_ms = self.server_ms()
        asset_id = {v: k for k, v in b.assets.items()}
        h1_from = now_ms - 3 * 86_400_000
        st = yield self.step("s2", [
            ("by_id", oa.ProtoOASymbolByIdReq(ctidTraderAccountId=self.account, symbolId=ids)),
            ("conversion", oa.ProtoOASymbolsForConversionReq(ctidTraderAccountId=self.account,
                                                              firstAssetId=asset_id["GBP"],
                                                              lastAssetId=asset_id["JPY"])),
            ("h1", oa.ProtoOAGetTrendbarsReq(ctidTraderAccountId=self.account, symbolId=eur, period=om.H1,
                                             fromTimestamp=h1_from, toTimestamp=now_ms, count=10)),
            ("d1", oa.ProtoOAGetTrendbarsReq(ctidTraderAccountId=self.account, symbolId=eur, period=om.D1,
                                             fromTimestamp=now_ms - 30 * 86_400_000, toTimestamp=now_ms, count=3)),
            ("spots", oa.ProtoOASubscribeSpotsReq(ctidTraderAccountId=self.account, symbolId=[eur, gbp],
                                                  subscribeToSpotTimestamp=True)),
            ("live_m1", oa.ProtoOASubscribeLiveTrendbarReq(ctidTraderAccountId=self.account, symbolId=eur,
                                                           period=om.M1)),
            ("live_m5", oa.ProtoOASubscribeLiveTrendbarReq(ctidTraderAccountId=self.account, symbolId=eur,
                                                           period=om.M5)),
            ("spots_again", oa.ProtoOASubscribeSpotsReq(ctidTraderAccountId=self.account, symbolId=[eur])),
            ("spots_unknown", oa.ProtoOASubscribeSpotsReq(ctidTraderAccountId=self.account, symbolId=[987_654])),
            ("live_unsubscribed", oa.ProtoOASubscribeLiveTrendbarReq(ctidTraderAccountId=self.account,
                                                                     symbolId=b.sid("USDJPY"), period=om.M1)),
        ])
        by_id = self.answer(st, "by_id", "ProtoOASymbolByIdRes")
        if by_id:
            b.specs = {s.symbolId: s for s in by_id[0].symbol}
            b.specs_names = {s.symbolId: name for name, s in b.symbols.items()}
            self.check("s2:by_id.ids", "ProtoOASymbolByIdReq", f"each of {ids} once",
                       [s.symbolId for s in by_id[0].symbol], sorted(s.symbolId for s in by_id[0].symbol) == ids)
            for spec in by_id[0].symbol:
                self.symbol_checks(spec)
        conv = self.answer(st, "conversion", "ProtoOASymbolsForConversionRes")
        if conv:
            self.conversion_check(conv[0], asset_id["GBP"], asset_id["JPY"])
        self.trendbar_checks(st, "h1", now_ms, count=10, from_ms=h1_from)
        self.trendbar_checks(st, "d1", now_ms, count=3)
        spots = self.answer(st, "spots", "ProtoOASubscribeSpotsRes")
        first = st.events_of("ProtoOASpotEvent")
        if spots:
            self.check("s2:spots.first", "ProtoOASubscribeSpotsReq",
                       "a spot event with the latest bid and ask of each symbol after subscribing",
                       [short(e, 120) for e in first],
                       {e.symbolId for e in first if e.HasField("bid") and e.HasField("ask")} >= {eur, gbp})
        for key in ("live_m1", "live_m5"):
            self.answer(st, key, "ProtoOASubscribeLiveTrendbarRes")
        b.live_periods = {eur: {om.M1, om.M5}}
        with_bars = [e for e in first if e.trendbar]
        self.check("s2:live.snapshot", "ProtoOASubscribeLiveTrendbarReq",
                   "a spot event carrying the forming M1 and M5 bars after subscribing",
                   [short(e, 200) for e in with_bars],
                   any({tb.period for tb in e.trendbar} == {om.M1, om.M5} for e in with_bars))
        self.answer(st, "spots_again", "ProtoOAErrorRes", "ALREADY_SUBSCRIBED")
        self.answer(st, "spots_unknown", "ProtoOAErrorRes", "SYMBOL_NOT_FOUND")
        self.answer(st, "live_unsubscribed", "ProtoOAErrorRes", "NOT_SUBSCRIBED_TO_SPOTS")
        self.spot_checks("s2", first)

        # the market moves: 3 instants, then to the next H1 bar (the M1 and M5 bars close meanwhile)
        seen = len(self.frames)
        self.control("advance", ticks=3)
        self.control("advance", bars=1)
        now_ms = self.server_ms()
        st = yield self.step("s3", [
            ("m1", oa.ProtoOAGetTrendbarsReq(ctidTraderAccountId=self.account, symbolId=eur, period=om.M1,
                                             fromTimestamp=now_ms - 3_600_000, toTimestamp=now_ms, count=30)),
            ("from_after_to", oa.ProtoOAGetTrendbarsReq(ctidTraderAccountId=self.account, symbolId=eur,
                                                        period=om.H1, fromTimestamp=now_ms,
                                                        toTimestamp=now_ms - 3_600_000)),
            ("unlive_m5", oa.ProtoOAUnsubscribeLiveTrendbarReq(ctidTraderAccountId=self.account, symbolId=eur,
                                                               period=om.M5)),
        ])
        moved = [f.msg for f in self.frames[seen:] if f.name == "ProtoOASpotEvent" and not f.cid]
        self.spot_checks("s3", moved, advanced=True)
        m1 = self.trendbar_checks(st, "m1", now_ms, count=30)
        self.live_vs_history("s3", moved, m1, eur, om.M1)
        self.answer(st, "from_after_to", "ProtoOAErrorRes", "INCORRECT_BOUNDARIES")
        self.answer(st, "unlive_m5", "ProtoOAUnsubscribeLiveTrendbarRes")
        b.live_periods = {eur: {om.M1}}

    def symbol_checks(self, s: Any) -> None:
        name = self.book.specs_names.get(s.symbolId, str(s.symbolId))
        req = f"ProtoOASymbolByIdReq {name}"
        cid = f"s2:by_id.{name}"
        vol_ok = (s.lotSize > 0 and 0 < s.minVolume <= s.maxVolume and s.stepVolume > 0
                  and s.minVolume % s.stepVolume == 0 and 0 <= s.pipPosition <= s.digits)
        self.check(f"{cid}.volumes", req, "digits >= pipPosition; lotSize, min/step/max volume in cents, "
                   "min a multiple of step", short(s, 200), vol_ok)
        try:
            zoneinfo.ZoneInfo(s.scheduleTimeZone)
            zone_ok = True
        except Exception:
            zone_ok = False
        sched = [(i.startSecond, i.endSecond) for i in s.schedule]
        self.check(f"{cid}.schedule", req, "a schedule of [start, end) seconds from Sunday 00:00 within the week, "
                   "in a known time zone", f"{s.scheduleTimeZone} {sched}",
                   zone_ok and bool(sched) and all(0 <= a < e <= WEEK_S for a, e in sched))
        bad_holidays = []
        for h in s.holiday:
            ok = 10_000 < h.holidayDate < 30_000 and h.name and h.HasField("isRecurring")
            try:
                zoneinfo.ZoneInfo(h.scheduleTimeZone)
            except Exception:
                ok = False
            if h.HasField("startSecond") or h.HasField("endSecond"):
                ok = ok and 0 <= h.startSecond < h.endSecond <= 86_400
            if not ok:
                bad_holidays.append(short(h))
        self.check(f"{cid}.holidays", req, "holidays: a date in days since 1970, a time zone, [start, end) within "
                   "the day", bad_holidays or [short(h, 120) for h in s.holiday], not bad_holidays)
        costs = (s.HasField("commissionType") and s.HasField("preciseTradingCommissionRate")
                 and s.preciseTradingCommissionRate >= 0 and s.HasField("swapLong") and s.HasField("swapShort")
                 and s.HasField("swapCalculationType") and s.HasField("swapRollover3Days")
                 and s.swapRollover3Days != om.NONE and 0 <= s.swapTime < 1440 and s.swapPeriod > 0)
        self.check(f"{cid}.costs", req, "commissionType + preciseTradingCommissionRate; swapLong/Short, "
                   "swapCalculationType, swapRollover3Days, swapTime (min from 00:00 UTC), swapPeriod",
                   f"commissionType={s.commissionType} rate={s.preciseTradingCommissionRate} "
                   f"swap={s.swapLong}/{s.swapShort} type={s.swapCalculationType} "
                   f"3days={s.swapRollover3Days} time={s.swapTime} period={s.swapPeriod}", costs)
        self.check(f"{cid}.distances", req, "slDistance and tpDistance > 0, distanceSetIn in points",
                   f"sl={s.slDistance} tp={s.tpDistance} in={s.distanceSetIn}",
                   s.HasField("slDistance") and s.HasField("tpDistance") and s.slDistance > 0 and s.tpDistance > 0
                   and s.distanceSetIn == om.SYMBOL_DISTANCE_IN_POINTS)

    def conversion_check(self, res: Any, first: int, last: int) -> None:
        asset, chain = first, []
        for s in res.symbol:
            chain.append(s.symbolName)
            if s.baseAssetId == asset:
                asset = s.quoteAssetId
            elif s.quoteAssetId == asset:
                asset = s.baseAssetId
            else:
                asset = None
                break
        self.check("s2:conversion.chain", "ProtoOASymbolsForConversionReq GBP -> JPY",
                   "light symbols chaining the first asset into the last", chain,
                   bool(chain) and asset == last)

    def trendbar_checks(self, st: Step, key: str, now_ms: int, count: int, from_ms: int | None = None,
                        forming: bool = True) -> list[Any]:
        got = self.answer(st, key, "ProtoOAGetTrendbarsRes")
        if not got:
            return []
        req, res = st.requests[key], got[0]
        period = PERIOD_S[req.period]
        name = f"ProtoOAGetTrendbarsReq {om.ProtoOATrendbarPeriod.Name(req.period)} count={count}"
        cid = st.cid(key)
        bars = [tb_bar(tb) for tb in res.trendbar]
        times = [b[0] for b in bars]
        self.check(f"{cid}.head", name, "the request's period and symbol, the account", short(res, 120),
                   res.period == req.period and res.symbolId == req.symbolId
                   and res.ctidTraderAccountId == self.account)
        self.check(f"{cid}.count", name, f"{count} bars (count), oldest first, open times aligned to the period",
                   times, len(bars) == count and times == sorted(set(times)) and all(t % period == 0 for t in times))
        bad = [b for b in bars if not (b[3] <= min(b[1], b[4]) and b[2] >= max(b[1], b[4]) and b[5] > 0
                                       and self.wire_price_ok(req.symbolId, b[3]))]
        self.check(f"{cid}.ohlc", name, "low + deltas in 1/100000 at the symbol's digits, low <= open/close <= "
                   "high, volume in ticks > 0", bad[:3] or bars[-1:], not bad)
        self.check(f"{cid}.period", name, "each trendbar's period field = the request's",
                   sorted({tb.period for tb in res.trendbar}), all(tb.period == req.period for tb in res.trendbar))
        if from_ms is not None:
            self.check(f"{cid}.from", name, f"no bar opening before fromTimestamp {from_ms}", times[:1],
                       all(t * 1000 >= from_ms for t in times))
        now = now_ms // 1000
        if forming and bars:
            self.check(f"{cid}.forming", name, f"the last bar is forming at server time {now} (open <= now < "
                       "open + period), the others closed", times[-2:],
                       times[-1] <= now < times[-1] + period and all(t + period <= now for t in times[:-1]))
        return list(res.trendbar)

    def spot_checks(self, label: str, spots: list[Any], advanced: bool = False) -> None:
        b = self.book
        now_ms = self.server_ms()
        bad: list[str] = []
        for e in spots:
            sid = e.symbolId
            if sid not in b.specs:
                bad.append(f"unknown symbol {sid}")
                continue
            prices = [v for v in (e.bid if e.HasField("bid") else None, e.ask if e.HasField("ask") else None)
                      if v is not None]
            if not prices or not all(self.wire_price_ok(sid, v) for v in prices):
                bad.append(f"prices not in 1/100000: {short(e, 120)}")
            if e.HasField("bid") and e.HasField("ask") and e.ask < e.bid:
                bad.append(f"ask < bid: {short(e, 120)}")
            if not e.HasField("timestamp") or not 10**12 < e.timestamp <= now_ms:
                bad.append(f"timestamp not in ms up to the server time {now_ms}: {short(e, 120)}")
            for tb in e.trendbar:
                t0, o, h, lo, c, v = tb_bar(tb)
                period = PERIOD_S.get(tb.period, 0)
                if tb.period not in b.live_periods.get(sid, set()):
                    bad.append(f"a {om.ProtoOATrendbarPeriod.Name(tb.period)} bar not subscribed: {short(e, 160)}")
                elif not (t0 % period == 0 and t0 <= e.timestamp // 1000 < t0 + period):
                    bad.append(f"the bar does not hold the spot's time: {short(e, 200)}")
                elif not (lo <= min(o, c) and h >= max(o, c) and v > 0 and (not e.HasField("bid") or c == e.bid)):
                    bad.append(f"the forming bar's close is not the bid / OHLC inconsistent: {short(e, 200)}")
        self.check(f"{label}:spot.events", "ProtoOASpotEvent",
                   "account, subscribed symbol, bid/ask in 1/100000 (ask >= bid), timestamp in ms <= server time; "
                   "trendbars only of subscribed periods, holding the spot's time, close = bid",
                   bad[:5] or f"{len(spots)} spot events", not bad and bool(spots))
        if advanced:
            per_symbol: dict[int, list[int]] = {}
            for e in spots:
                per_symbol.setdefault(e.symbolId, []).append(e.timestamp)
            self.check(f"{label}:spot.moving", "ProtoOASpotEvent",
                       "spot events for each subscribed symbol as the market advances, timestamps increasing",
                       {k: len(v) for k, v in per_symbol.items()},
                       len(per_symbol) == 2 and all(len(v) > 3 and v == sorted(v) for v in per_symbol.values()))

    def live_vs_history(self, label: str, spots: list[Any], history: list[Any], sid: int, period: int) -> None:
        """The live bars closed meanwhile (the last snapshot of each before a newer one) are the history's."""
        closed, pending = {}, None
        for e in spots:
            for tb in e.trendbar:
                if e.symbolId != sid or tb.period != period:
                    continue
                bar = tb_bar(tb)
                if pending is not None and bar[0] > pending[0]:
                    closed[pending[0]] = pending
                pending = bar
        hist = {tb_bar(tb)[0]: tb_bar(tb) for tb in history}
        common = sorted(set(closed) & set(hist))
        diff = [(closed[t], hist[t]) for t in common if closed[t] != hist[t]]
        self.check(f"{label}:live.closed_bars", "ProtoOASubscribeLiveTrendbarReq M1",
                   "bars closed live (last snapshot before a newer bar) equal the history's bars",
                   diff[:3] or f"{len(common)} bars compared", len(common) >= 30 - 2 and not diff)

    # 3. orders: a fill and the refusals
    @defer.inlineCallbacks
    def orders(self) -> Any:
        b = self.book
        eur = b.sid("EURUSD")
        spec = b.specs[eur]
        point_wire = 10 ** (5 - spec.digits)  # one point in 1/100000
        volume = 10 * spec.minVolume  # 0.1 lot
        st = yield self.step("s4", [
            ("buy", oa.ProtoOANewOrderReq(ctidTraderAccountId=self.account, symbolId=eur, orderType=om.MARKET,
                                          tradeSide=BUY, volume=volume, relativeStopLoss=1000,
                                          relativeTakeProfit=1000, label="conformance", comment="official client",
                                          clientOrderId="conf-buy-1")),
            ("bad_volume", oa.ProtoOANewOrderReq(ctidTraderAccountId=self.account, symbolId=eur,
                                                 orderType=om.MARKET, tradeSide=BUY,
                                                 volume=spec.minVolume + spec.stepVolume // 2)),
            ("no_money", oa.ProtoOANewOrderReq(ctidTraderAccountId=self.account, symbolId=eur, orderType=om.MARKET,
                                               tradeSide=BUY, volume=spec.maxVolume)),
            ("too_close", oa.ProtoOANewOrderReq(ctidTraderAccountId=self.account, symbolId=eur,
                                                orderType=om.MARKET, tradeSide=BUY, volume=spec.minVolume,
                                                relativeStopLoss=(spec.slDistance - 1) * point_wire)),
            ("absolute_stops", oa.ProtoOANewOrderReq(ctidTraderAccountId=self.account, symbolId=eur,
                                                     orderType=om.MARKET, tradeSide=BUY, volume=spec.minVolume,
                                                     stopLoss=1.0)),
            ("close_unknown", oa.ProtoOAClosePositionReq(ctidTraderAccountId=self.account, positionId=987_654_321,
                                                         volume=spec.minVolume)),
        ])
        quote = b.quotes[eur]
        pos = self.fill_checks(st, "buy", eur, BUY, volume, quote, rel_sl=1000, rel_tp=1000)
        self.order_error(st, "bad_volume", "TRADING_BAD_VOLUME")
        self.order_error(st, "no_money", "NOT_ENOUGH_MONEY")
        self.order_error(st, "too_close", "PROTECTION_IS_TOO_CLOSE_TO_MARKET")
        self.order_error(st, "absolute_stops", "TRADING_BAD_STOPS")
        self.order_error(st, "close_unknown", "POSITION_NOT_FOUND", position_id=987_654_321)
        return pos

    def fill_checks(self, st: Step, key: str, sid: int, side: int, volume: int, quote: Quote, rel_sl: int = 0,
                    rel_tp: int = 0, partial: int = 0) -> Any:
        """A market order's execution events: ORDER_ACCEPTED then ORDER_FILLED (ORDER_PARTIAL_FILL between for a
        partial fill of `partial` cents), each with the request's clientMsgId; order, position and deal in the
        contract's units. Returns the position of the last event."""
        b = self.book
        req = st.requests[key]
        name = f"ProtoOANewOrderReq {b.specs_names[sid]} {'BUY' if side == BUY else 'SELL'} {volume}"
        cid = st.cid(key)
        events = self.answer(st, key, "ProtoOAExecutionEvent")
        types = [om.ProtoOAExecutionType.Name(e.executionType) for e in events]
        want = ["ORDER_ACCEPTED", "ORDER_PARTIAL_FILL", "ORDER_FILLED"] if partial else ["ORDER_ACCEPTED",
                                                                                        "ORDER_FILLED"]
        if not self.check(f"{cid}.sequence", name, f"{' then '.join(want)}, each with the clientMsgId", types,
                          types == want):
            return events[-1].position if events else None
        now_ms = self.server_ms()
        price = (quote.ask if side == BUY else quote.bid) / PRICE_SCALE
        accepted, filled = events[0], events[-1]
        self.check(f"{cid}.accepted", name, "ORDER_ACCEPTED: the order (ACCEPTED, MARKET, the requested volume in "
                   "cents, side, symbol, clientOrderId, label) and its position; not a server event",
                   short(accepted, 400),
                   accepted.ctidTraderAccountId == self.account and accepted.HasField("order")
                   and accepted.HasField("position") and accepted.order.orderStatus == om.ORDER_STATUS_ACCEPTED
                   and accepted.order.orderType == om.MARKET and accepted.order.tradeData.volume == volume
                   and accepted.order.tradeData.tradeSide == side and accepted.order.tradeData.symbolId == sid
                   and accepted.order.clientOrderId == req.clientOrderId
                   and accepted.order.tradeData.label == req.label and not accepted.isServerEvent)
        deals = [e.deal for e in events[1:]]
        d_first = deals[0]
        order = filled.order
        filled_total = sum(d.filledVolume for d in deals)
        vwap = sum(d.executionPrice * d.filledVolume for d in deals) / max(1, filled_total)
        fine = 10 ** -(b.digits(sid) + 1)
        self.check(f"{cid}.order", name, f"ORDER_FILLED: order FILLED, executedVolume {volume}, executionPrice a "
                   f"double, the deals' average {vwap:.8f}", short(order, 300),
                   order.orderStatus == om.ORDER_STATUS_FILLED and order.executedVolume == volume
                   and order.tradeData.volume == volume and order.positionId == filled.position.positionId
                   and order.HasField("executionPrice") and self.price_ok(sid, order.executionPrice, at_digits=False)
                   and abs(order.executionPrice - vwap) < fine and order.clientOrderId == req.clientOrderId)
        self.check(f"{cid}.deal_price", name, f"the (first) deal at the quote's {'ask' if side == BUY else 'bid'} "
                   f"{price} (a double)", d_first.executionPrice, abs(d_first.executionPrice - price) < 1e-9)
        bad = []
        for d in deals:
            if not (d.orderId == order.orderId and d.positionId == filled.position.positionId and d.symbolId == sid
                    and d.tradeSide == side and 0 < d.filledVolume <= d.volume
                    and d.dealStatus in (om.FILLED, om.PARTIALLY_FILLED) and d.createTimestamp == now_ms
                    and d.executionTimestamp == now_ms and d.moneyDigits == b.money_digits
                    and not d.HasField("closePositionDetail") and self.price_ok(sid, d.executionPrice)):
                bad.append(short(d))
        self.check(f"{cid}.deals", name, f"deals of the order and position: filledVolume <= volume in cents, "
                   f"timestamps = server time {now_ms} ms, moneyDigits {b.money_digits}, no closePositionDetail",
                   bad or [short(d, 160) for d in deals], not bad)
        self.check(f"{cid}.filled_volume", name, f"the deals fill {volume} cents", filled_total,
                   filled_total == volume)
        pos = filled.position
        sign = 1 if side == BUY else -1
        sl = round(pos.price - sign * rel_sl / PRICE_SCALE, b.digits(sid)) if rel_sl else None
        tp = round(pos.price + sign * rel_tp / PRICE_SCALE, b.digits(sid)) if rel_tp else None
        self.check(f"{cid}.position", name, f"position OPEN, {volume} cents, price = the deals' VWAP "
                   f"{vwap:.8f}, SL/TP from the relative distances ({sl}/{tp}), moneyDigits",
                   short(pos, 400),
                   pos.positionStatus == om.POSITION_STATUS_OPEN and pos.tradeData.volume == volume
                   and pos.tradeData.tradeSide == side and abs(pos.price - vwap) < fine
                   and (sl is None or abs(pos.stopLoss - sl) < 1e-9)
                   and (tp is None or abs(pos.takeProfit - tp) < 1e-9)
                   and pos.moneyDigits == b.money_digits and pos.swap == 0)
        commission = self.expected_commission(sid, deals)
        self.check(f"{cid}.commission", name, f"each deal's commission (negative, 10^moneyDigits) per the symbol's "
                   f"commission rate, {commission} in all; the position's = their sum",
                   f"deals {[d.commission for d in deals]}, position {pos.commission}",
                   commission is not None and abs(sum(d.commission for d in deals) - commission) <= len(deals)
                   and pos.commission == sum(d.commission for d in deals))
        margin = b.money(b.units(volume) * vwap / (b.leverage_in_cents / 100))
        self.check(f"{cid}.margin", name, f"usedMargin ~ units x price / leverage = {margin}", pos.usedMargin,
                   abs(pos.usedMargin - margin) <= max(2, margin // 100))
        if partial:
            part = events[1]
            self.check(f"{cid}.partial", name, f"ORDER_PARTIAL_FILL: the order still ACCEPTED with the requested "
                       f"volume {volume}, executedVolume {partial}; the deal fills {partial}; the position holds "
                       f"{partial}", short(part, 500),
                       part.order.orderStatus == om.ORDER_STATUS_ACCEPTED and part.order.tradeData.volume == volume
                       and part.order.executedVolume == partial and part.deal.filledVolume == partial
                       and part.position.tradeData.volume == partial
                       and part.position.positionStatus == om.POSITION_STATUS_OPEN)
        return pos

    def expected_commission(self, sid: int, deals: list[Any]) -> int | None:
        """The deals' commission (negative wire money) for a USD-quoted symbol on a USD account."""
        b = self.book
        spec, light = b.specs[sid], b.symbols[b.specs_names[sid]]
        if b.assets.get(light.quoteAssetId) != "USD" or b.assets.get(b.deposit_asset) != "USD":
            return None
        rate = spec.preciseTradingCommissionRate
        total = 0
        for d in deals:
            units = b.units(d.filledVolume)
            if spec.commissionType == om.USD_PER_MILLION_USD:
                amount = units * d.executionPrice / 1e6 * rate / 1e8
            elif spec.commissionType == om.USD_PER_LOT:
                amount = d.filledVolume / spec.lotSize * rate / 1e8
            elif spec.commissionType == om.PERCENTAGE_OF_VALUE:
                amount = units * d.executionPrice * rate / 1e5 / 100
            else:
                return None
            total -= b.money(max(amount, spec.preciseMinCommission / 1e8))
        return total

    # 4. SL/TP amendments, a throttled request, history limits, a partial fill
    @defer.inlineCallbacks
    def amend_and_partial(self, pos: Any) -> Any:
        b = self.book
        eur, gbp = b.sid("EURUSD"), b.sid("GBPUSD")
        spec = b.specs[eur]
        digits, point = spec.digits, 10 ** -spec.digits
        bid = b.quotes[eur].bid / PRICE_SCALE
        pid = pos.positionId
        edge_sl, edge_tp = round(bid - spec.slDistance * point, digits), round(bid + spec.tpDistance * point, digits)
        sl, tp = round(bid - 0.01, digits), round(bid + 0.01, digits)
        now_ms = self.server_ms()
        self.control("throttle", count=1, types=["ProtoOAGetTrendbarsReq"])
        self.control("partial_fills", count=1, fraction=0.5)
        volume = 20 * b.specs[gbp].minVolume  # 0.2 lot
        amend = oa.ProtoOAAmendPositionSLTPReq
        st = yield self.step("s5", [
            ("amend_edge", amend(ctidTraderAccountId=self.account, positionId=pid, stopLoss=edge_sl,
                                 takeProfit=edge_tp)),
            ("amend", amend(ctidTraderAccountId=self.account, positionId=pid, stopLoss=sl, takeProfit=tp)),
            ("amend_wrong_side", amend(ctidTraderAccountId=self.account, positionId=pid,
                                       stopLoss=round(bid + 0.002, digits))),
            ("amend_too_close", amend(ctidTraderAccountId=self.account, positionId=pid,
                                      stopLoss=round(bid - (spec.slDistance - 1) * point, digits))),
            ("amend_unknown", amend(ctidTraderAccountId=self.account, positionId=987_654_321, stopLoss=1.0)),
            ("reconcile", oa.ProtoOAReconcileReq(ctidTraderAccountId=self.account)),
            ("throttled", oa.ProtoOAGetTrendbarsReq(ctidTraderAccountId=self.account, symbolId=eur, period=om.M5,
                                                    fromTimestamp=now_ms - 3_600_000, toTimestamp=now_ms, count=2)),
            ("retried", oa.ProtoOAGetTrendbarsReq(ctidTraderAccountId=self.account, symbolId=eur, period=om.M5,
                                                  fromTimestamp=now_ms - 3_600_000, toTimestamp=now_ms, count=2)),
            ("span", oa.ProtoOAGetTrendbarsReq(ctidTraderAccountId=self.account, symbolId=eur, period=om.M1,
                                               fromTimestamp=now_ms - 4 * 86_400_000, toTimestamp=now_ms)),
            ("sell_partial", oa.ProtoOANewOrderReq(ctidTraderAccountId=self.account, symbolId=gbp,
                                                   orderType=om.MARKET, tradeSide=SELL, volume=volume,
                                                   clientOrderId="conf-sell-partial")),
            ("unspot_gbp", oa.ProtoOAUnsubscribeSpotsReq(ctidTraderAccountId=self.account, symbolId=[gbp])),
        ])
        for key, want_sl, want_tp in (("amend_edge", edge_sl, edge_tp), ("amend", sl, tp)):
            got = self.answer(st, key, "ProtoOAExecutionEvent")
            if got:
                ev = got[0]
                self.check(f"{st.cid(key)}.replaced", f"ProtoOAAmendPositionSLTPReq SL {want_sl} TP {want_tp}",
                           "ORDER_REPLACED with the position, its stopLoss/takeProfit the requested doubles",
                           short(ev, 300),
                           ev.executionType == om.ORDER_REPLACED and ev.position.positionId == pid
                           and abs(ev.position.stopLoss - want_sl) < 1e-9
                           and abs(ev.position.takeProfit - want_tp) < 1e-9
                           and ev.position.tradeData.volume == pos.tradeData.volume)
        self.order_error(st, "amend_wrong_side", "TRADING_BAD_STOPS", position_id=pid)
        self.order_error(st, "amend_too_close", "PROTECTION_IS_TOO_CLOSE_TO_MARKET", position_id=pid)
        self.order_error(st, "amend_unknown", "POSITION_NOT_FOUND", position_id=987_654_321)
        rec = self.answer(st, "reconcile", "ProtoOAReconcileRes")
        if rec:
            mine = [p for p in rec[0].position if p.positionId == pid]
            self.check("s5:reconcile.position", "ProtoOAReconcileReq",
                       f"the open position {pid} with SL {sl} TP {tp}, volume and price as filled",
                       [short(p, 300) for p in rec[0].position],
                       len(mine) == 1 and mine[0].stopLoss == sl and mine[0].takeProfit == tp
                       and mine[0].price == pos.price and mine[0].tradeData.volume == pos.tradeData.volume)
        self.answer(st, "throttled", "ProtoOAErrorRes", "REQUEST_FREQUENCY_EXCEEDED")
        self.trendbar_checks(st, "retried", now_ms, count=2)
        self.answer(st, "span", "ProtoOAErrorRes", "INCORRECT_BOUNDARIES")
        quote = b.quotes[gbp]
        partial = self.fill_checks(st, "sell_partial", gbp, SELL, volume, quote, partial=volume // 2)
        self.answer(st, "unspot_gbp", "ProtoOAUnsubscribeSpotsRes")
        return partial

    # 5. a rollover (SWAP), closes, deal history, token refresh
    @defer.inlineCallbacks
    def rollover_and_close(self, pos: Any, partial: Any) -> Any:
        b = self.book
        eur, gbp = b.sid("EURUSD"), b.sid("GBPUSD")
        start = self.server_ms() // 1000
        rollover = self.next_rollover(b.specs[eur], start)
        seen = len(self.frames)
        self.control("advance", until=rollover + 60)
        now_ms = self.server_ms()
        st = yield self.step("s6", [
            ("unserved", oa.ProtoOAGetTrendbarsReq(ctidTraderAccountId=self.account, symbolId=eur, period=om.W1,
                                                   fromTimestamp=now_ms - 86_400_000 * 60, toTimestamp=now_ms)),
        ])
        after = self.frames[seen:]
        moved = [f.msg for f in after if f.name == "ProtoOASpotEvent" and not f.cid]
        self.spot_checks("s6", moved)
        self.check("s6:spot.unsubscribed", "ProtoOAUnsubscribeSpotsReq GBPUSD / ProtoOAUnsubscribeLiveTrendbarReq M5",
                   "no GBPUSD spot and no M5 bar after unsubscribing",
                   sorted({(e.symbolId, tb.period) for e in moved for tb in e.trendbar}
                          | {(e.symbolId, 0) for e in moved}),
                   all(e.symbolId == eur and all(tb.period == om.M1 for tb in e.trendbar) for e in moved))
        self.answer(st, "unserved", "ProtoOAErrorRes", "INVALID_REQUEST")
        swaps = [f.msg for f in after if f.name == "ProtoOAExecutionEvent" and f.msg.executionType == om.SWAP]
        self.swap_checks(swaps, {pos.positionId: (eur, BUY, pos.tradeData.volume),
                                 partial.positionId: (gbp, SELL, partial.tradeData.volume)}, start, rollover + 60)
        accrued = {s.position.positionId: s.position.swap for s in swaps}

        balance = b.balance
        half = partial.tradeData.volume // 2
        st = yield self.step("s7", [
            ("close", oa.ProtoOAClosePositionReq(ctidTraderAccountId=self.account, positionId=pos.positionId,
                                                 volume=pos.tradeData.volume)),
            ("close_half", oa.ProtoOAClosePositionReq(ctidTraderAccountId=self.account,
                                                      positionId=partial.positionId, volume=half)),
            ("deals", oa.ProtoOADealListReq(ctidTraderAccountId=self.account, fromTimestamp=0, toTimestamp=now_ms)),
            ("trader", oa.ProtoOATraderReq(ctidTraderAccountId=self.account)),
            ("refresh", oa.ProtoOARefreshTokenReq(refreshToken=self.args.refresh_token)),
            ("after_refresh", oa.ProtoOAReconcileReq(ctidTraderAccountId=self.account)),
        ])
        bid = b.quotes[eur].bid / PRICE_SCALE  # a long closes at the bid
        closing = self.close_checks(st, "close", pos, pos.tradeData.volume, bid, accrued.get(pos.positionId, 0),
                                    balance)
        if closing is not None:
            balance = closing.closePositionDetail.balance
        # GBPUSD is no longer subscribed: its closing price is read from the deal, checked against the position
        closing_gbp = self.close_checks(st, "close_half", partial, half, None, accrued.get(partial.positionId, 0),
                                        balance)
        if closing_gbp is not None:
            balance = closing_gbp.closePositionDetail.balance
        deals = self.answer(st, "deals", "ProtoOADealListRes")
        if deals:
            listed = {d.dealId: d for d in deals[0].deal}
            closes = [d for d in (closing, closing_gbp) if d is not None]
            self.check("s7:deals.history", "ProtoOADealListReq",
                       "every deal so far (2 opening fills of the partial order, 1 of the buy, 2 closing), the "
                       "closing deals as the execution events had them, hasMore false",
                       [short(d, 160) for d in deals[0].deal],
                       len(listed) == 5 and deals[0].hasMore is False
                       and all(listed.get(d.dealId) == d for d in closes))
        trader = self.answer(st, "trader", "ProtoOATraderRes")
        if trader:
            self.check("s7:trader.balance", "ProtoOATraderReq", f"the balance after the closes: {balance}",
                       trader[0].trader.balance, trader[0].trader.balance == balance)
        refreshed = self.answer(st, "refresh", "ProtoOARefreshTokenRes")
        if refreshed:
            r = refreshed[0]
            self.tokens_now = (r.accessToken, r.refreshToken)
            self.check("s7:refresh.pair", "ProtoOARefreshTokenReq", "a new access token and a new refresh token, "
                       "tokenType bearer, expiresIn in seconds (> 0, < 10^8)", short(r),
                       r.accessToken != self.args.access_token and r.refreshToken != self.args.refresh_token
                       and r.tokenType.lower() == "bearer" and 0 < r.expiresIn < 10**8)
        else:
            self.tokens_now = (self.args.access_token, self.args.refresh_token)
        invalidated = st.events_of("ProtoOAAccountsTokenInvalidatedEvent")
        self.check("s7:refresh.invalidated", "ProtoOARefreshTokenReq",
                   f"ProtoOAAccountsTokenInvalidatedEvent for account {self.account} (the old token), with a reason",
                   [short(e) for e in invalidated],
                   len(invalidated) == 1 and list(invalidated[0].ctidTraderAccountIds) == [self.account]
                   and bool(invalidated[0].reason))
        self.answer(st, "after_refresh", "ProtoOAErrorRes", "ACCOUNT_NOT_AUTHORIZED")

    def next_rollover(self, spec: Any, t: int) -> int:
        day = t - t % 86_400 + spec.swapTime * 60
        return day if day > t else day + 86_400

    def swap_checks(self, swaps: list[Any], positions: dict[int, tuple[int, int, int]], t0: int, t1: int) -> None:
        b = self.book
        got = {s.position.positionId: s for s in swaps}
        self.check("rollover:swap.events", "(the market passes a rollover)",
                   "one SWAP execution event per open position, a server event without clientMsgId",
                   [short(s, 200) for s in swaps],
                   set(got) == set(positions) and len(swaps) == len(positions)
                   and all(s.isServerEvent and s.ctidTraderAccountId == self.account for s in swaps))
        for pid, (sid, side, volume) in positions.items():
            spec = b.specs[sid]
            ev = got.get(pid)
            if ev is None:
                continue
            rate = spec.swapLong if side == BUY else spec.swapShort
            days = 0
            t = self.next_rollover(spec, t0)
            while t <= t1:
                weekday = dt.datetime.fromtimestamp(t, dt.UTC).isoweekday()
                if weekday in (SATURDAY, SUNDAY) and not spec.chargeSwapAtWeekends:
                    pass
                else:
                    days += 3 if weekday == spec.swapRollover3Days else 1
                t += 86_400
            want = b.money(rate * 10**-spec.pipPosition * b.units(volume) * days) if (
                spec.swapCalculationType == om.PIPS) else None
            self.check(f"rollover:swap.{b.specs_names[sid]}", "(the market passes a rollover)",
                       f"the position's swap = swap{'Long' if side == BUY else 'Short'} {rate} pips x "
                       f"{b.units(volume)} units x {days} day(s) = {want} (10^moneyDigits), moneyDigits set",
                       short(ev.position, 300),
                       want is not None and abs(ev.position.swap - want) <= 1
                       and ev.position.moneyDigits == b.money_digits
                       and ev.position.positionStatus == om.POSITION_STATUS_OPEN)

    def close_checks(self, st: Step, key: str, pos: Any, volume: int, exit_price: float | None, swap: int,
                     balance: int) -> Any:
        """A close: ORDER_ACCEPTED then ORDER_FILLED with the closing order, the position (CLOSED or OPEN with the
        rest) and the closing deal's closePositionDetail (gross, swap, commission, balance). Returns the deal."""
        b = self.book
        sid = pos.tradeData.symbolId
        name = f"ProtoOAClosePositionReq {pos.positionId} volume {volume}"
        cid = st.cid(key)
        events = self.answer(st, key, "ProtoOAExecutionEvent")
        types = [om.ProtoOAExecutionType.Name(e.executionType) for e in events]
        if not self.check(f"{cid}.sequence", name, "ORDER_ACCEPTED then ORDER_FILLED, each with the clientMsgId",
                          types, types == ["ORDER_ACCEPTED", "ORDER_FILLED"]):
            return None
        filled = events[-1]
        deal, order, after = filled.deal, filled.order, filled.position
        detail = deal.closePositionDetail
        rest = pos.tradeData.volume - volume
        self.check(f"{cid}.order", name, "a closing order (closingOrder, positionId) of the opposite side, FILLED",
                   short(order, 300),
                   order.closingOrder and order.positionId == pos.positionId
                   and order.tradeData.tradeSide != pos.tradeData.tradeSide
                   and order.orderStatus == om.ORDER_STATUS_FILLED and order.executedVolume == volume)
        self.check(f"{cid}.position", name, "the position CLOSED" if not rest else f"the position OPEN with "
                   f"{rest} cents left", short(after, 300),
                   after.positionId == pos.positionId and (
                       after.positionStatus == om.POSITION_STATUS_CLOSED if not rest
                       else after.positionStatus == om.POSITION_STATUS_OPEN and after.tradeData.volume == rest))
        if not self.check(f"{cid}.detail", name, "the deal's closePositionDetail", short(deal, 400),
                          deal.HasField("closePositionDetail") and deal.positionId == pos.positionId
                          and deal.filledVolume == volume):
            return deal
        price = deal.executionPrice
        exit_ok = exit_price is None or abs(price - exit_price) < 1e-9
        sign = 1 if pos.tradeData.tradeSide == BUY else -1
        gross = b.money((price - pos.price) * sign * b.units(volume))  # USD quote, USD account
        share = volume / pos.tradeData.volume
        commission_open = round(pos.commission * share)
        realised_swap = swap if not rest else int(swap * volume // pos.tradeData.volume)
        self.check(f"{cid}.money", name,
                   f"exit at the {'bid' if sign > 0 else 'ask'}{'' if exit_price is None else f' {exit_price}'}; "
                   f"entryPrice {pos.price}, closedVolume {volume}; grossProfit (exit - entry) x units = {gross}; "
                   f"swap the accrued share {realised_swap}; commission the opening share {commission_open} + the "
                   f"closing deal's {deal.commission}; all in 10^{b.money_digits}",
                   short(detail, 400),
                   exit_ok and self.price_ok(sid, price) and detail.entryPrice == pos.price
                   and detail.closedVolume == volume and abs(detail.grossProfit - gross) <= 1
                   and abs(detail.swap - realised_swap) <= 1
                   and abs(detail.commission - (commission_open + deal.commission)) <= 1
                   and detail.moneyDigits == b.money_digits and deal.commission < 0)
        net = detail.grossProfit + detail.swap + detail.commission + detail.pnlConversionFee
        self.check(f"{cid}.balance", name, f"balance = the balance before {balance} + gross + swap + commission "
                   f"= {balance + net}", detail.balance, detail.balance == balance + net)
        return deal

    # 6. a refused refresh, a used refresh token, token expiry
    @defer.inlineCallbacks
    def tokens(self, partial: Any) -> Any:
        access, refresh = self.tokens_now
        old_access = self.args.access_token
        self.control("refuse_refresh", count=1)
        st = yield self.step("s8", [
            ("auth_old", oa.ProtoOAAccountAuthReq(ctidTraderAccountId=self.account, accessToken=old_access)),
            ("auth_new", oa.ProtoOAAccountAuthReq(ctidTraderAccountId=self.account, accessToken=access)),
            ("reconcile", oa.ProtoOAReconcileReq(ctidTraderAccountId=self.account)),
            ("refresh_refused", oa.ProtoOARefreshTokenReq(refreshToken=refresh)),
            ("refresh_used", oa.ProtoOARefreshTokenReq(refreshToken=self.args.refresh_token)),
            ("trader", oa.ProtoOATraderReq(ctidTraderAccountId=self.account)),
        ])
        self.answer(st, "auth_old", "ProtoOAErrorRes", "CH_ACCESS_TOKEN_INVALID")
        self.answer(st, "auth_new", "ProtoOAAccountAuthRes")
        rec = self.answer(st, "reconcile", "ProtoOAReconcileRes")
        if rec:
            left = [(p.positionId, p.tradeData.volume) for p in rec[0].position]
            self.check("s8:reconcile.after_closes", "ProtoOAReconcileReq",
                       f"only the half left of position {partial.positionId}", left,
                       left == [(partial.positionId, partial.tradeData.volume // 2)])
        self.answer(st, "refresh_refused", "ProtoOAErrorRes")
        self.answer(st, "refresh_used", "ProtoOAErrorRes")
        self.answer(st, "trader", "ProtoOATraderRes")
        self.check("s8:refresh_refused.no_invalidation", "ProtoOARefreshTokenReq (refused)",
                   "no ProtoOAAccountsTokenInvalidatedEvent: the tokens stay valid",
                   [f.name for f in st.events if f.name != "ProtoHeartbeatEvent"],
                   not st.events_of("ProtoOAAccountsTokenInvalidatedEvent"))

        seen = len(self.frames)
        self.control("expire_token")
        st = yield self.step("s9", [
            ("trader", oa.ProtoOATraderReq(ctidTraderAccountId=self.account)),
            ("auth_expired", oa.ProtoOAAccountAuthReq(ctidTraderAccountId=self.account, accessToken=access)),
            ("refresh", oa.ProtoOARefreshTokenReq(refreshToken=refresh)),
        ])
        expired = [f.msg for f in self.frames[seen:] if f.name == "ProtoOAAccountsTokenInvalidatedEvent"]
        self.check("s9:expiry.invalidated", "(the access token expires)",
                   f"ProtoOAAccountsTokenInvalidatedEvent for account {self.account} with a reason",
                   [short(e) for e in expired],
                   len(expired) == 1 and list(expired[0].ctidTraderAccountIds) == [self.account]
                   and bool(expired[0].reason))
        self.answer(st, "trader", "ProtoOAErrorRes", "ACCOUNT_NOT_AUTHORIZED")
        self.answer(st, "auth_expired", "ProtoOAErrorRes", {"CH_ACCESS_TOKEN_INVALID", "OA_AUTH_TOKEN_EXPIRED"})
        refreshed = self.answer(st, "refresh", "ProtoOARefreshTokenRes")
        if refreshed:
            self.tokens_now = (refreshed[0].accessToken, refreshed[0].refreshToken)
            self.check("s9:refresh.after_expiry", "ProtoOARefreshTokenReq", "a new pair (a refresh token outlives "
                       "its access token)", short(refreshed[0]), refreshed[0].accessToken != access)
        st = yield self.step("s10", [
            ("auth", oa.ProtoOAAccountAuthReq(ctidTraderAccountId=self.account, accessToken=self.tokens_now[0])),
        ])
        self.answer(st, "auth", "ProtoOAAccountAuthRes")

    # 7. the server drops the account
    @defer.inlineCallbacks
    def account_disconnect(self) -> Any:
        seen = len(self.frames)
        self.control("account_disconnect")
        st = yield self.step("s11", [
            ("trader", oa.ProtoOATraderReq(ctidTraderAccountId=self.account)),
            ("auth", oa.ProtoOAAccountAuthReq(ctidTraderAccountId=self.account, accessToken=self.tokens_now[0])),
            ("trader_again", oa.ProtoOATraderReq(ctidTraderAccountId=self.account)),
        ])
        events = [f for f in self.frames[seen:] if f.name == "ProtoOAAccountDisconnectEvent"]
        self.check("s11:account_disconnect.event", "(the server ends the account's session)",
                   f"ProtoOAAccountDisconnectEvent for account {self.account}, no clientMsgId",
                   [short(f.msg) for f in events],
                   len(events) == 1 and events[0].msg.ctidTraderAccountId == self.account and not events[0].cid)
        self.answer(st, "trader", "ProtoOAErrorRes", "ACCOUNT_NOT_AUTHORIZED")
        self.answer(st, "auth", "ProtoOAAccountAuthRes")
        self.answer(st, "trader_again", "ProtoOATraderRes")

    # 8. the weekend: closed market
    @defer.inlineCallbacks
    def weekend(self, partial: Any) -> Any:
        b = self.book
        eur = b.sid("EURUSD")
        now = self.server_ms() // 1000
        saturday = now - now % 86_400 + ((SATURDAY - dt.datetime.fromtimestamp(now, dt.UTC).isoweekday()) % 7) * 86_400
        self.control("advance", until=saturday + 3600)
        st = yield self.step("s12", [
            ("order", oa.ProtoOANewOrderReq(ctidTraderAccountId=self.account, symbolId=eur, orderType=om.MARKET,
                                            tradeSide=BUY, volume=b.specs[eur].minVolume)),
            ("close", oa.ProtoOAClosePositionReq(ctidTraderAccountId=self.account, positionId=partial.positionId,
                                                 volume=partial.tradeData.volume // 2)),
            ("spots", oa.ProtoOASubscribeSpotsReq(ctidTraderAccountId=self.account, symbolId=[eur],
                                                  subscribeToSpotTimestamp=True)),
        ])
        self.order_error(st, "order", "MARKET_CLOSED")
        self.order_error(st, "close", "MARKET_CLOSED", position_id=partial.positionId)
        self.answer(st, "spots", "ProtoOASubscribeSpotsRes")
        spots = st.events_of("ProtoOASpotEvent")
        self.check("s12:spots.closed_market", "ProtoOASubscribeSpotsReq (market closed)",
                   "one spot event with the latest prices, from before the close (Friday)",
                   [short(e, 160) for e in spots],
                   len(spots) == 1 and spots[0].HasField("bid") and spots[0].HasField("ask")
                   and 10**12 < spots[0].timestamp <= saturday * 1000)
        b.live_periods = {}
        self.spot_checks("s12", spots)

    # 9. heartbeats both ways
    @defer.inlineCallbacks
    def heartbeats(self) -> Any:
        if not self.received["ProtoHeartbeatEvent"]:  # the server sends one every heartbeat interval
            self.heartbeat_waiter = defer.Deferred()
            yield self.heartbeat_waiter
        beats = [f for f in self.frames if f.name == "ProtoHeartbeatEvent"]
        self.check("heartbeat.server", "-", "ProtoHeartbeatEvent from the server, without clientMsgId",
                   f"{len(beats)} received", bool(beats) and not any(f.cid for f in beats))
        protocol = yield self.client.whenConnected()
        start = len(self.frames)
        protocol.heartbeat()  # the official protocol's own heartbeat (it also answers each of the server's)
        self.sent["ProtoHeartbeatEvent"] += 1
        yield self.step("s13", [])
        answered = [f.name for f in self.frames[start:] if f.name != "ProtoHeartbeatEvent" and not f.cid]
        self.check("heartbeat.client", "ProtoHeartbeatEvent", "accepted silently (no error, nothing in return)",
                   answered or "nothing", not answered)

    # 10. the server ends the connection
    @defer.inlineCallbacks
    def client_disconnect(self) -> Any:
        start = len(self.frames)
        self.control("client_disconnect", reason="conformance: the application access was blocked")
        (reason,) = yield self.closed
        events = [f for f in self.frames[start:] if f.name == "ProtoOAClientDisconnectEvent"]
        self.check("client_disconnect.event", "(the server cancels the connection)",
                   "ProtoOAClientDisconnectEvent with the reason, no clientMsgId, then the connection closes",
                   f"{[short(f.msg) for f in events]}; closed: {reason.getErrorMessage()}",
                   len(events) == 1 and events[0].msg.reason == "conformance: the application access was blocked"
                   and not events[0].cid)

    # ---- every frame
    def final_checks(self) -> None:
        by_type: dict[str, list[str]] = {}
        counts: Counter[str] = Counter()
        for f in self.frames:
            counts[f.name] += 1
            problems = contract_problems(f.msg)
            fields = f.msg.DESCRIPTOR.fields_by_name
            if "ctidTraderAccountId" in fields and f.msg.HasField("ctidTraderAccountId") and (
                    f.msg.ctidTraderAccountId != self.account):
                problems.append(f"ctidTraderAccountId {f.msg.ctidTraderAccountId} is not the account")
            if f.name in ("ProtoHeartbeatEvent", "ProtoOASpotEvent", "ProtoOAAccountsTokenInvalidatedEvent",
                          "ProtoOAAccountDisconnectEvent", "ProtoOAClientDisconnectEvent") and f.cid:
                problems.append(f"an event with clientMsgId {f.cid}")
            by_type.setdefault(f.name, []).extend(f"#{f.seq}: {p}" for p in problems)
        for name in sorted(by_type):
            problems = by_type[name]
            self.check(f"contract.{name}", "(every frame received)",
                       "required fields set (IsInitialized), enum values defined, no unknown fields, the account's "
                       "ctidTraderAccountId", problems[:5] or f"{counts[name]} frames", not problems)
        self.check("contract.closed", "-", "no frame after the connection closed", self.frames_after_close,
                   self.frames_after_close == 0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--control-port", type=int, required=True)
    p.add_argument("--report", required=True)
    p.add_argument("--account", type=int, default=1_000_001)
    p.add_argument("--client-id", default="sim-client")
    p.add_argument("--client-secret", default="sim-secret")
    p.add_argument("--access-token", default="sim-token")
    p.add_argument("--refresh-token", default="sim-refresh")
    args = p.parse_args(argv)
    conf = Conformance(args)
    outcome: dict[str, Any] = {"error": None}

    def done(result: Any) -> None:
        if isinstance(result, Exception) or hasattr(result, "getTraceback"):
            outcome["error"] = result.getTraceback() if hasattr(result, "getTraceback") else repr(result)
        if reactor.running:
            reactor.stop()

    def guard() -> None:
        outcome["error"] = f"the session did not finish within {SESSION_TIMEOUT_S} s (a guard, not a check)"
        reactor.stop()

    def start() -> None:
        conf.run().addBoth(done)

    reactor.callWhenRunning(start)
    timer = reactor.callLater(SESSION_TIMEOUT_S, guard)
    reactor.run()
    if timer.active():
        timer.cancel()
    report = {
        "checks": conf.checks,
        "sent": dict(sorted(conf.sent.items())),
        "received": dict(sorted(conf.received.items())),
        "client": {"package": f"ctrader-open-api {importlib.metadata.version('ctrader-open-api')}",
                   "class": f"{Client.__module__}.{Client.__name__}", "protocol": TcpProtocol.__name__,
                   "endpoint": f"ssl:{args.host}:{args.port}", "numberOfMessagesToSendPerSecond": SENDS_PER_SECOND,
                   "decoder": "ctrader_open_api.Protobuf.extract", "envelope": cm.ProtoMessage.DESCRIPTOR.full_name},
        "error": outcome["error"],
    }
    with open(args.report, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    failed = [c for c in conf.checks if not c["ok"]]
    print(f"{len(conf.checks)} checks, {len(failed)} failed{'; error' if outcome['error'] else ''}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        sys.exit(2)
