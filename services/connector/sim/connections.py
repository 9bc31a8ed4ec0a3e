"""The simulator's client connections: a session per TCP/TLS connection, frames in (rate limits, the faults at
the wire, authorisation checks, dispatch to the request handlers) and out (delays, silence), errors answered as
the real server does, and the heartbeats that keep a connection alive or close a silent one.

A mixin of SimServer (server.py): it uses the server's handlers, faults, account and config.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from services.connector.ctrader import schemas as proto
from services.connector.ctrader.ratelimit import SlidingWindow
from services.connector.sim.account import SimError

log = logging.getLogger(__name__)
oa = proto.oa
PT = proto.payload_type_of

HISTORY_TYPES = {PT(oa.ProtoOAGetTrendbarsReq), PT(oa.ProtoOAGetTickDataReq)}
# requests answered, when refused, with ProtoOAOrderErrorEvent (as the real server does) instead of ProtoOAErrorRes
ORDER_TYPES = {PT(oa.ProtoOANewOrderReq), PT(oa.ProtoOAClosePositionReq), PT(oa.ProtoOAAmendPositionSLTPReq)}
# requests a session may send before its account is authorised
OPEN_TYPES = {PT(oa.ProtoOAVersionReq), PT(oa.ProtoOAApplicationAuthReq)}


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
    held: list[bytes] | None = None  # frames written together at the next flush (a replay burst); None: at once


class Connections:
    _coalescing: int  # `_coalesced` blocks entered (made 0 by SimServer)

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
        until = self.faults.silent_until
        return until > 0 and asyncio.get_running_loop().time() < until  # no silence yet: no clock read a frame

    def _send(self, session: Session, msg: Message, cid: str = "") -> None:
        if session.closed or self._silent():
            return
        self._send_frame(session, msg.DESCRIPTOR.name, proto.encode_frame(proto.encode_envelope(msg, cid or None)))

    def _send_frame(self, session: Session, name: str, frame: bytes) -> None:
        """A frame already made (message type `name`) out to the session, the faults at the wire applied."""
        if session.closed or self._silent():
            return
        rule = self.faults.take(self.faults.delay, name) if self.faults.delay else None
        if rule is not None:
            asyncio.get_running_loop().call_later(rule.get("seconds", 1.0), self._write, session, frame)
        else:
            self._write(session, frame)

    def _write(self, session: Session, frame: bytes) -> None:
        if session.closed or self._silent():
            return
        if session.held is not None:
            session.held.append(frame)
            return
        try:
            session.writer.write(frame)
        except Exception:  # the peer went away; the read side will notice
            self._drop(session)

    @contextlib.contextmanager
    def _coalesced(self) -> Iterator[None]:
        """The frames sent meanwhile (in order, per session) go out in one write per `_flush` and at the end, as a
        server's socket sends what it has in as few segments as it can: a burst of many instants, one TLS record
        and one system call per flush instead of per frame."""
        self._coalescing += 1
        if self._coalescing == 1:
            for s in self.sessions:
                s.held = []
        try:
            yield
        finally:
            self._coalescing -= 1
            if self._coalescing == 0:
                self._flush(hold=False)

    def _flush(self, hold: bool = True) -> None:
        """The frames held so far out to each session (still holding what comes next when `hold`)."""
        for s in list(self.sessions):
            frames, s.held = s.held, None
            if frames:
                self._write(s, b"".join(frames))
            if hold and self._coalescing and not s.closed:
                s.held = []

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
        if name is not None:
            self.requests_seen[name] += 1
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
