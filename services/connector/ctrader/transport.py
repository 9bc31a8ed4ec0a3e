"""asyncio-native cTrader Open API transport: TLS or TCP stream, length framing, request correlation by
clientMsgId, heartbeats, rate limits and dead-connection detection. No Twisted.

Frames that answer a pending request (same clientMsgId) resolve its future; every other frame is handed to the
`on_event` callback, synchronously and in arrival order, from the read loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from common import trace
from services.connector.ctrader import requests_wire, spots
from services.connector.ctrader import schemas as proto
from services.connector.ctrader.ratelimit import SlidingWindow

log = logging.getLogger(__name__)

HISTORY_TYPES = frozenset(
    {
        proto.payload_type_of(proto.oa.ProtoOAGetTrendbarsReq),
        proto.payload_type_of(proto.oa.ProtoOAGetTickDataReq),
    }
)
NO_LIMIT_TYPES = frozenset({proto.HEARTBEAT})
# the server's word for "too many requests": a request refused this way is sent again after a second
RATE_ERRORS = frozenset({"REQUEST_FREQUENCY_EXCEEDED", "BLOCKED_PAYLOAD_TYPE"})
# the client-side window is a little longer than the server's 1 s, so that network jitter between our clock and
# its arrival times does not push a burst over the limit
WINDOW_S = 1.1
PROBE_ID = "liveness-probe"  # clientMsgId of the VersionReq sent when the line is quiet; its answer is dropped


class TransportError(Exception):
    pass


class ConnectionClosed(TransportError):
    pass


class RequestTimeout(TransportError):
    pass


class ErrorResponse(TransportError):
    """The server answered a request with ProtoOAErrorRes / ProtoErrorRes / ProtoOAOrderErrorEvent."""

    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description


@dataclass(frozen=True)
class TransportConfig:
    host: str
    port: int
    tls: bool = True
    verify: bool = True  # False only for a local simulator with a self-signed certificate
    ca_file: str | None = None
    connect_timeout: float = 10.0
    request_timeout: float = 10.0
    heartbeat_interval: float = 10.0
    dead_after: float = 30.0  # nothing received for this long -> the connection is dead
    rate_limit: int = 50  # requests per second
    history_rate_limit: int = 5  # historical data requests per second
    rate_retries: int = 2  # times a request refused for its rate is sent again (after 1 s)


EventCallback = Callable[[int, Message | None, str], None]
CloseCallback = Callable[[BaseException | None], None]

_ERROR_TYPES = frozenset({proto.ERROR_RES, proto.OA_ERROR_RES, proto.payload_type_of(proto.oa.ProtoOAOrderErrorEvent)})


def error_of(payload_type: int, msg: Message | None) -> ErrorResponse | None:
    if payload_type in _ERROR_TYPES and msg is not None:
        return ErrorResponse(getattr(msg, "errorCode", "UNKNOWN"), getattr(msg, "description", ""))
    return None


def ssl_context(config: TransportConfig) -> ssl.SSLContext | None:
    if not config.tls:
        return None
    ctx = ssl.create_default_context(cafile=config.ca_file)
    if not config.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Transport:
    def __init__(
        self,
        config: TransportConfig,
        on_event: EventCallback | None = None,
        on_close: CloseCallback | None = None,
        read_frame: Callable[[bytes], tuple[int, Any, str]] = spots.read_frame,
    ) -> None:
        self.config = config
        self._read_frame = read_frame  # a frame body -> (payload type, message, clientMsgId)
        self._on_event = on_event
        self._on_close = on_close
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[str, asyncio.Future[tuple[int, Message | None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._send_lock = asyncio.Lock()
        self._limit = SlidingWindow(config.rate_limit, WINDOW_S)
        self._history_limit = SlidingWindow(config.history_rate_limit, WINDOW_S)
        self._last_rx = 0.0
        self._closed = asyncio.Event()
        self._close_reason: BaseException | None = None
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def close_reason(self) -> BaseException | None:
        return self._close_reason

    async def connect(self) -> None:
        cfg = self.config
        ctx = ssl_context(cfg)
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(cfg.host, cfg.port, ssl=ctx, server_hostname=cfg.host if ctx else None),
            cfg.connect_timeout,
        )
        loop = asyncio.get_running_loop()
        self._last_rx = loop.time()
        self._open = True
        self._closed.clear()
        self._tasks = [
            loop.create_task(self._read_loop(), name="ctrader-read"),
            loop.create_task(self._heartbeat_loop(), name="ctrader-heartbeat"),
            loop.create_task(self._watchdog_loop(), name="ctrader-watchdog"),
        ]

    async def wait_closed(self) -> BaseException | None:
        await self._closed.wait()
        return self._close_reason

    async def close(self) -> None:
        await self._shutdown(None)

    async def abort(self, reason: BaseException) -> None:
        """Close because the connection is no longer usable (the reason reaches wait_closed/on_close)."""
        await self._shutdown(reason)

    async def send(self, msg: Message | requests_wire.Encoded, client_msg_id: str | None = None) -> str:
        """Send a message (or one serialised already, requests_wire.py) without waiting for an answer; returns the
        clientMsgId used."""
        cid = client_msg_id or uuid.uuid4().hex
        await self._send(msg, cid)
        return cid

    async def request(self, msg: Message, timeout: float | None = None, client_msg_id: str | None = None) -> Message:
        """Send a request and await the frame carrying the same clientMsgId.

        Raises ErrorResponse for an error answer, RequestTimeout, or ConnectionClosed.
        """
        retries = self.config.rate_retries
        for attempt in range(retries + 1):
            try:
                return await self._request_once(msg, timeout, client_msg_id)
            except ErrorResponse as exc:
                if exc.code not in RATE_ERRORS or attempt == retries:
                    raise
                log.info("%s refused (%s); retrying in 1 s", msg.DESCRIPTOR.name, exc.code)
                await asyncio.sleep(1.0)
        raise AssertionError("unreachable")

    async def _request_once(self, msg: Message, timeout: float | None, client_msg_id: str | None) -> Message:
        cid = client_msg_id or uuid.uuid4().hex
        fut: asyncio.Future[tuple[int, Message | None]] = asyncio.get_running_loop().create_future()
        self._pending[cid] = fut
        try:
            await self._send(msg, cid)
            try:
                ptype, answer = await asyncio.wait_for(fut, timeout or self.config.request_timeout)
            except TimeoutError:
                raise RequestTimeout(f"{msg.DESCRIPTOR.name} timed out") from None
        finally:
            self._pending.pop(cid, None)
        err = error_of(ptype, answer)
        if err is not None:
            raise err
        if answer is None:
            raise TransportError(f"unknown payload type {ptype} in answer to {msg.DESCRIPTOR.name}")
        return answer

    async def _send(self, msg: Message | requests_wire.Encoded, cid: str | None) -> None:
        if not self._open or self._writer is None:
            raise ConnectionClosed("not connected")
        encoded = isinstance(msg, requests_wire.Encoded)
        ptype = msg.payload_type if encoded else proto.payload_type_of(msg)
        if ptype not in NO_LIMIT_TYPES:
            await self._wait_rate(self._limit)
            if ptype in HISTORY_TYPES:
                await self._wait_rate(self._history_limit)
        frame = proto.encode_frame(requests_wire.envelope(msg, cid) if encoded else proto.encode_envelope(msg, cid))
        async with self._send_lock:
            if not self._open:
                raise ConnectionClosed("not connected")
            try:
                self._writer.write(frame)
                await self._writer.drain()
            except (ConnectionError, OSError) as exc:
                await self._shutdown(ConnectionClosed(f"send failed: {exc}"))
                raise ConnectionClosed(str(exc)) from exc

    async def _wait_rate(self, window: SlidingWindow) -> None:
        loop = asyncio.get_running_loop()
        while (delay := window.delay(loop.time())) > 0:
            trace.mark("connector.rate_wait", f"{delay * 1000:.2f}ms {len(window.sent)}")
            await asyncio.sleep(delay)
        window.record(loop.time())

    async def _read_loop(self) -> None:
        assert self._reader is not None
        decoder = proto.FrameDecoder()
        loop = asyncio.get_running_loop()
        reason: BaseException | None = ConnectionClosed("connection closed by peer")
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                self._last_rx = loop.time()
                for body in decoder.feed(data):
                    self._dispatch(*self._read_frame(body))
        except asyncio.CancelledError:
            return
        except Exception as exc:  # any read/parse failure ends the connection
            reason = ConnectionClosed(f"read failed: {exc!r}")
        await self._shutdown(reason)

    def _dispatch(self, ptype: int, msg: Any, cid: str) -> None:
        fut = self._pending.get(cid) if cid else None
        if fut is not None and not fut.done():
            fut.set_result((ptype, msg))
            return
        if ptype == proto.HEARTBEAT or cid == PROBE_ID:
            return
        if self._on_event is not None:
            try:
                self._on_event(ptype, msg, cid)
            except Exception:
                log.exception("event handler failed for %s", proto.type_name(ptype))

    async def _heartbeat_loop(self) -> None:
        try:
            while self._open:
                await asyncio.sleep(self.config.heartbeat_interval)
                await self._send(proto.common.ProtoHeartbeatEvent(), None)
        except (asyncio.CancelledError, ConnectionClosed):
            return

    async def _watchdog_loop(self) -> None:
        """Declare the connection dead after `dead_after` s without a byte; probe with a VersionReq at half."""
        loop = asyncio.get_running_loop()
        probed_at = 0.0
        try:
            while self._open:
                idle = loop.time() - self._last_rx
                if idle >= self.config.dead_after:
                    await self._shutdown(ConnectionClosed(f"nothing received for {idle:.1f} s"))
                    return
                if idle >= self.config.dead_after / 2 and probed_at < self._last_rx:
                    probed_at = loop.time()
                    with contextlib.suppress(ConnectionClosed):
                        await self._send(proto.oa.ProtoOAVersionReq(), PROBE_ID)
                await asyncio.sleep(min(0.5, self.config.dead_after / 4))
        except asyncio.CancelledError:
            return

    async def _shutdown(self, reason: BaseException | None) -> None:
        if not self._open:
            return
        self._open = False
        self._close_reason = reason
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(reason or ConnectionClosed("closed"))
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 1.0)
        self._closed.set()
        if self._on_close is not None:
            try:
                self._on_close(reason)
            except Exception:
                log.exception("close handler failed")
