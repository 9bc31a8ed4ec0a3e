"""ZeroMQ sockets speaking the wire of :mod:`common.wire` (zguide patterns named as in the book).

- :class:`Publisher`: PUB with a deliberate high-water mark, an epoch and a seq per topic (a subscriber that
  filters by topic sees every message of its topics, so a hole in seq is a real loss, not a filtered message).
- :class:`Subscriber`: SUB to several publishers, decoding, counting malformed frames, and
  classifying each message with :class:`~common.sequence.SequenceTracker` (gap, new epoch, ...).
- :class:`Requester`: Lazy Pirate REQ: every request has a timeout; a timed-out socket is closed
  and reopened so it is never stuck. Blocking (``call``) or driven by the caller's poll loop
  (``send`` / ``take_reply``).
- :class:`Responder`: a REP server that always answers, with an error reply for a bad request; or a ROUTER
  (``concurrent``) whose handlers may answer later (:class:`Deferred`), several requests in flight. It checks the
  caller (common/peer.py) against who may call the op (common/roles.py) before the handler runs: a refused call is
  answered ``forbidden``, counted in ``refused`` and told to ``on_refused`` (the runtime alerts).

After :func:`secure` (``wire.curve``, set up once per process by ``common.keys.secure_process``) every socket made
here is CURVE: servers admit only known keys through a ZAP authenticator, and a received frame's ``User-Id`` is the
name of the peer's key (``frame.get("User-Id")``).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgpack
import zmq
import zmq.auth.thread
import zmq.utils.z85

from common import messages, roles, schema, wire
from common.peer import Peer, PeerCache
from common.sequence import Seen, SequenceTracker

log = logging.getLogger("oracle.bus")

# A PUB socket drops silently past its HWM. Bars and signals are facts we must not lose in a
# replay burst, so the limit is high (memory-bounded, ~100 MB at 1 kB a message) and explicit.
PUB_HWM = 100_000
SUB_HWM = 100_000
# No socket takes a frame larger than the largest legitimate message with margin (wire.MAX_MESSAGE_BYTES): ZeroMQ
# reads the size in the frame's header and drops the connection unread, so a 1 GB frame is never allocated.
MAX_MESSAGE_BYTES = wire.MAX_MESSAGE_BYTES


def _limited(sock: zmq.Socket) -> zmq.Socket:
    """The socket, with the wire's size limit set and, after :func:`secure`, CURVE on (every socket of the project
    is made here: a server socket before its bind, a client socket before its connects, see :func:`_connect`)."""
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    if _curve is not None:
        _curve.apply(sock)
    return sock


def connect(sock: zmq.Socket, endpoint: str) -> None:
    """Connect, with the server's public key of that endpoint set first when CURVE is on (a SUB connects to several
    publishers: each connection takes the key set at its connect)."""
    if _curve is not None:
        sock.setsockopt(zmq.CURVE_SERVERKEY, _curve.server_key(endpoint))
    sock.connect(endpoint)


# ---- CURVE -----------------------------------------------------------------------------------

ZAP_DOMAIN = b"oracle"
_SERVER_TYPES = frozenset({zmq.PUB, zmq.REP, zmq.ROUTER, zmq.XPUB})
DENIAL_LOG_INTERVAL_S = 60.0  # a denied key is logged at its first handshake, then at most this often
_DENIED_KEYS_MAX = 1024  # distinct denied keys counted one by one; past this, as "others" (a flood of random keys)


class CurveError(ValueError):
    """A CURVE client socket connecting where no server key is known."""


class _Admission:
    """The ZAP credentials provider: admits the keys of the keyring and names the peer by its key's name.
    Called in the authenticator's thread; the counts are plain ints and dicts the status reads."""

    def __init__(self, by_key: dict[bytes, str]):
        self.by_key = by_key
        self.denied = 0
        self.denied_by_key: dict[str, int] = {}
        self._logged_at: dict[str, float] = {}

    def callback(self, _domain: str, key: bytes) -> bool:
        if key in self.by_key:
            return True
        self.denied += 1
        who = key.decode("ascii", "replace")
        if who not in self.denied_by_key and len(self.denied_by_key) >= _DENIED_KEYS_MAX:
            who = "others"
        n = self.denied_by_key[who] = self.denied_by_key.get(who, 0) + 1
        now = time.monotonic()
        last = self._logged_at.get(who)
        if last is None or now - last >= DENIAL_LOG_INTERVAL_S:
            if len(self._logged_at) < _DENIED_KEYS_MAX or who in self._logged_at:
                self._logged_at[who] = now
            log.warning("CURVE handshake denied: unknown public key %s (%d denied from it, %d in all)",
                        who, n, self.denied)
        return False


class _Authenticator(zmq.auth.thread.ThreadAuthenticator):
    """pyzmq's ZAP authenticator in a thread, giving each admitted peer its key's name as ``User-Id``."""

    def __init__(self, ctx: zmq.Context, admission: _Admission):
        super().__init__(ctx, log=logging.getLogger("oracle.bus.zap"))
        self.admission = admission

    def curve_user_id(self, client_public_key: bytes) -> str:
        # the raw 32-byte key here; the provider's callback had its Z85 form
        return self.admission.by_key.get(zmq.utils.z85.encode(client_public_key), "")


class _Curve:
    def __init__(self, keyring: Any, own_name: str, server_keys: dict[str, bytes]):
        self.keyring = keyring
        self.own_name = own_name
        self.server_keys = dict(server_keys)
        self.admission = _Admission(dict(keyring.by_key))
        self.authenticators: dict[int, tuple[zmq.Context, _Authenticator]] = {}
        self.lock = threading.Lock()

    def server_key(self, endpoint: str) -> bytes:
        key = self.server_keys.get(endpoint)
        if key is None:
            raise CurveError(f"CURVE is on and no server public key is known for {endpoint} (not an endpoint of the "
                             f"configuration, or its program's .key is missing in {self.keyring.keys_dir})")
        return key

    def apply(self, sock: zmq.Socket) -> None:
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.keyring.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.keyring.secret)
        if sock.type in _SERVER_TYPES:
            self._authenticator(sock.context)
            sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
            # fail closed: were the ZAP handler gone, libzmq would otherwise admit any key
            sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
            sock.setsockopt(zmq.CURVE_SERVER, 1)

    def _authenticator(self, ctx: zmq.Context) -> None:
        """The ZAP handler of this context, started before its first server socket binds (its sockets enforce the
        ZAP domain: without a handler, nobody is admitted)."""
        with self.lock:
            if id(ctx) in self.authenticators:
                return
            auth = _Authenticator(ctx, self.admission)
            auth.configure_curve_callback(domain=ZAP_DOMAIN.decode(), credentials_provider=self.admission)
            auth.start()
            self.authenticators[id(ctx)] = (ctx, auth)

    def release(self, ctx: zmq.Context) -> None:
        with self.lock:
            entry = self.authenticators.pop(id(ctx), None)
        if entry is not None:
            entry[1].stop()


_curve: _Curve | None = None


def secure(keyring: Any, own_name: str, server_keys_by_endpoint: dict[str, bytes]) -> None:
    """Make every socket this process makes from now on CURVE: server sockets (PUB, REP, ROUTER) admit only the
    keyring's public keys through a ZAP authenticator (a peer's ``User-Id`` is its key's name); client sockets
    (SUB, REQ) use ``keyring``'s keypair and the server key of the endpoint they connect to. ``keyring`` is a
    ``common.keys.Keyring`` (public, secret, by_key, keys_dir)."""
    global _curve
    plain()
    _curve = _Curve(keyring, own_name, server_keys_by_endpoint)


def plain() -> None:
    """Back to plain sockets (CURVE off) for the sockets made from now on; stops the authenticators."""
    global _curve
    curve, _curve = _curve, None
    if curve is not None:
        for ctx, _auth in list(curve.authenticators.values()):
            curve.release(ctx)


def is_secure() -> bool:
    return _curve is not None


def release(ctx: zmq.Context) -> None:
    """Stop ``ctx``'s ZAP authenticator, if it has one (its socket would keep ``ctx.term()`` waiting forever)."""
    if _curve is not None:
        _curve.release(ctx)


def _curve_hint() -> str:
    """What a timeout may also mean with CURVE on: a handshake that failed is silent (ZeroMQ tells the peer nothing)."""
    if _curve is None:
        return ""
    return (f" (CURVE on, as {_curve.own_name}: a server without CURVE, or one that does not admit this key, never "
            "answers)")


def curve_denials() -> int:
    """Handshakes refused for an unknown key in this process (0 with CURVE off)."""
    return _curve.admission.denied if _curve is not None else 0

# pyzmq's constants are enum flags: `zmq.SNDMORE | flags` builds a new enum member per call; the plain ints do not.
# Reading a socket option (`sock.get(zmq.EVENTS)`, the RCVMORE that `recv_multipart` reads after each part) costs
# about as much as a receive; a frame's own `more` costs nothing.
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_SNDMORE = int(zmq.SNDMORE)
_NOBLOCK = int(zmq.NOBLOCK)


def _recv_now(sock: zmq.Socket) -> list[bytes] | None:
    """The next message's frames, or None when none is waiting (never blocks)."""
    got = _recv_with_first(sock)
    return None if got is None else got[0]


def _recv_with_first(sock: zmq.Socket) -> tuple[list[bytes], zmq.Frame] | None:
    """The next message's frames and its first part's frame (whose properties name the caller: common/peer.py), or
    None when none is waiting (never blocks)."""
    try:
        first = part = sock.recv(_NOBLOCK, copy=False)
    except zmq.Again:
        return None
    frames = [part.bytes]
    while part.more:  # the rest of a message is delivered with its first part
        part = sock.recv(_NOBLOCK, copy=False)
        frames.append(part.bytes)
    return frames, first


class WireErrors:
    """Counts malformed frames by kind and logs the first of each kind only."""

    def __init__(self, owner: str):
        self.owner = owner
        self.counts: dict[str, int] = {}

    def record(self, err: wire.WireError, where: str) -> None:
        n = self.counts.get(err.code, 0) + 1
        self.counts[err.code] = n
        if n == 1:
            log.warning("%s: malformed frame on %s: %s (logged once per kind)", self.owner, where, err)


def new_epoch() -> int:
    """Id of this process start: the wall clock in ns, so a later start has a larger epoch."""
    return time.time_ns()


class Publisher:
    """Thread-safe by a lock: the runtime's step-heartbeat thread may publish while the loop thread is busy
    (a socket may change threads behind a full memory barrier, which the lock gives)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, src: str, epoch: int, hwm: int = PUB_HWM):
        self.src = src
        self.epoch = epoch
        self.seqs: dict[str, int] = {}
        self.lock = threading.Lock()
        self.sock = _limited(ctx.socket(zmq.PUB))
        self.sock.setsockopt(zmq.SNDHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 500)
        self.sock.bind(endpoint)
        self.endpoint = endpoint
        # for publish_many: the envelope's packed head per message type, and the topic frames
        self._packer = msgpack.Packer(use_bin_type=True)  # used under the lock only
        self._heads: dict[type, bytes] = {}
        self._topics: dict[str, bytes] = {}

    def publish(self, topic: str, body: Any) -> int:
        with self.lock:
            seq = self.seqs.get(topic, 0) + 1
            self.seqs[topic] = seq
            topic_frame, payload = wire.encode_pub(topic, self.src, self.epoch, seq, time.time_ns(), body)
            self.sock.send(topic_frame, _SNDMORE)
            self.sock.send(payload)
        return seq

    def publish_many(self, items: Iterable[tuple[str, Any]]) -> None:
        """``publish(topic, body)`` for each (topic, body), in order, under one lock and one timestamp: the bytes
        ``wire.encode_pub`` makes (a msgpack map is its header then its keys and values, packed one after the
        other: the envelope's fields up to ``seq`` are packed once per message type)."""
        pack, heads, topics, seqs, sock = self._packer.pack, self._heads, self._topics, self.seqs, self.sock
        with self.lock:
            ts_body = pack("ts") + pack(time.time_ns()) + pack("body")
            frames = []  # all packed first, then sent back to back: the I/O thread woken once for several
            try:
                for topic, body in items:
                    head = heads.get(type(body))
                    if head is None:
                        head = heads[type(body)] = self._head(body)
                    topic_frame = topics.get(topic)
                    if topic_frame is None:
                        if len(topics) >= 4096:  # a publisher's topics are few: a bound against a runaway set
                            topics.clear()
                        topic_frame = topics[topic] = topic.encode()
                    seq = seqs.get(topic, 0) + 1
                    seqs[topic] = seq
                    frames.append((topic_frame, b"".join((head, pack(seq), ts_body, pack(schema.to_wire(body))))))
            finally:  # those before a body that cannot be encoded go out (as publish would have sent them)
                send = sock.send
                for topic_frame, payload in frames:
                    send(topic_frame, _SNDMORE)
                    send(payload)

    def _head(self, body: Any) -> bytes:
        """The packed start of an envelope map of 7 entries up to the ``seq`` key (as ``wire.encode_pub`` orders)."""
        pack = self._packer.pack
        return (b"\x87" + pack("v") + pack(wire.WIRE_VERSION) + pack("type") + pack(messages.type_name(body))
                + pack("src") + pack(self.src) + pack("epoch") + pack(self.epoch) + pack("seq"))

    def close(self) -> None:
        self.sock.close()


@dataclass(frozen=True, slots=True)
class Received:
    envelope: wire.Envelope
    seen: Seen


_received = schema.maker(Received)


class Subscriber:
    def __init__(
        self,
        ctx: zmq.Context,
        endpoints: Iterable[str],
        prefixes: Iterable[str],
        errors: WireErrors,
        hwm: int = SUB_HWM,
    ):
        """``hwm``: messages queued per publisher at most (past it the publisher drops for this subscriber, never
        waits: a gap its tracker reports); lower for a process off the trading path (the dashboard)."""
        self.sock = _limited(ctx.socket(zmq.SUB))
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        for prefix in prefixes:
            self.sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        self.endpoints = list(endpoints)
        for endpoint in self.endpoints:
            connect(self.sock, endpoint)
        self.errors = errors
        self.tracker = SequenceTracker()

    def drain(self, limit: int = 10_000) -> list[Received]:
        """Every message waiting now (up to ``limit``), decoded and classified; never blocks."""
        out: list[Received] = []
        sock = self.sock
        decode, observe = wire.decode_pub, self.tracker.observe
        for _ in range(limit):
            frames = _recv_now(sock)  # one zmq.Again ends a drain: cheaper than reading EVENTS before each message
            if frames is None:
                break
            try:
                env = decode(frames)
            except wire.WireError as err:
                self.errors.record(err, "SUB")
                continue
            seen = observe(f"{env.src} {env.topic}", env.epoch, env.seq)
            if seen.accept:
                out.append(_received(env, seen))
        return out

    def close(self) -> None:
        self.sock.close()


class RequestTimeout(TimeoutError):
    pass


class RequestFailed(RuntimeError):
    """The peer answered ``ok: false``."""

    def __init__(self, op: str, code: str, message: str):
        super().__init__(f"{op} failed: {code}: {message}")
        self.code = code
        self.message = message


class Requester:
    """Lazy Pirate REQ client for one endpoint."""

    _ids = itertools.count(1)

    def __init__(self, ctx: zmq.Context, endpoint: str, src: str, timeout_ms: int = 2000):
        self.ctx = ctx
        self.endpoint = endpoint
        self.src = src
        self.timeout_ms = timeout_ms
        self.sock: zmq.Socket | None = None
        self.pending: tuple[str, str, float] | None = None  # (op, id, deadline monotonic)
        self.resets = 0
        self._open()

    def _open(self) -> None:
        self.sock = _limited(self.ctx.socket(zmq.REQ))
        self.sock.setsockopt(zmq.LINGER, 0)
        connect(self.sock, self.endpoint)

    def reset(self) -> None:
        """Close and reopen the socket (a REQ that lost its reply is otherwise stuck)."""
        assert self.sock is not None
        self.sock.close()
        self.pending = None
        self.resets += 1
        self._open()

    def next_id(self) -> str:
        return f"{self.src}-{next(self._ids)}"

    # -- driven by the caller's poll loop ---------------------------------------------------
    def send(self, op: str, args: Any, timeout_ms: int | None = None, req_id: str | None = None) -> str:
        if self.pending is not None:
            raise RuntimeError(f"request {self.pending[0]} to {self.endpoint} still pending")
        req_id = req_id or self.next_id()
        assert self.sock is not None
        self.sock.send(wire.encode_request(op, req_id, args))
        deadline = time.monotonic() + (timeout_ms or self.timeout_ms) / 1000
        self.pending = (op, req_id, deadline)
        return req_id

    def take_reply(self) -> wire.Reply | None:
        """The reply, if it has arrived; resets the socket and raises on timeout."""
        if self.pending is None:
            return None
        op, req_id, deadline = self.pending
        assert self.sock is not None
        frames = _recv_now(self.sock)
        if frames is None:
            if time.monotonic() >= deadline:
                self.reset()
                raise RequestTimeout(f"{op} to {self.endpoint}: no reply in time{_curve_hint()}") from None
            return None
        self.pending = None
        reply = wire.decode_reply(frames, op)
        if reply.id != req_id:
            raise wire.WireError(wire.BAD_ENVELOPE, f"reply id {reply.id} does not match request {req_id}")
        return reply

    # -- blocking ---------------------------------------------------------------------------
    def call(self, op: str, args: Any, timeout_ms: int | None = None, retries: int = 0) -> Any:
        """Send and wait; retries reuse the request id so an idempotent server can deduplicate."""
        req_id = self.next_id()
        timeout_ms = timeout_ms or self.timeout_ms
        for attempt in range(retries + 1):
            self.send(op, args, timeout_ms, req_id)
            assert self.sock is not None
            self.sock.setsockopt(zmq.RCVTIMEO, timeout_ms)  # a blocking recv with a deadline
            try:
                frames = self.sock.recv_multipart()
            except zmq.Again:
                self.reset()
                log.debug("%s to %s timed out (attempt %d)", op, self.endpoint, attempt + 1)
                continue
            self.pending = None
            reply = wire.decode_reply(frames, op)
            if reply.id != req_id:
                raise wire.WireError(wire.BAD_ENVELOPE, f"reply id {reply.id} does not match request {req_id}")
            if not reply.ok:
                raise RequestFailed(op, reply.error_code, reply.error_message)
            return reply.result
        raise RequestTimeout(f"{op} to {self.endpoint}: no reply in {timeout_ms} ms ({retries + 1} tries)"
                             f"{_curve_hint()}")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


Handler = Callable[[Any], Any]
ALERT_EVERY_S = 60.0  # a refused call is told (alerted) the first time, then at most this often per (op, caller)
MAX_REFUSED_KEYS = 256  # (op, caller) counters kept; past it, an op's new callers count as "other"


@dataclass
class Deferred:
    """A handler's answer that is not known yet (served by a ``concurrent`` Responder only): the reply is
    ``finish(future)`` once ``future`` is done, computed in the loop thread (an OpError it raises is an error
    reply). ``deadline`` (monotonic s) bounds the wait: past it the requester gets a ``timeout`` error."""

    future: Any  # concurrent.futures.Future (or anything with done() / result() / cancel())
    finish: Callable[[Any], Any]
    deadline: float | None = None
    what: str = ""


@dataclass
class _Waiting:
    route: list[bytes]
    req_id: str
    op: str
    deferred: Deferred


class Responder:
    """Request server: decode, dispatch to ``handlers[op]``, always reply exactly once.

    A REP socket by default: one request at a time. ``concurrent=True`` binds a ROUTER instead, so a handler may
    answer later with a :class:`Deferred` while the loop goes on serving others (REQ clients are unchanged: each
    still has one request in flight; several clients, or one client's several REQ sockets, overlap)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, handlers: dict[str, Handler], errors: WireErrors,
                 concurrent: bool = False, on_refused: Callable[[str, Peer, int, str], None] | None = None):
        self.sock = _limited(ctx.socket(zmq.ROUTER if concurrent else zmq.REP))
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.endpoint = endpoint
        self.handlers = handlers
        self.errors = errors
        self.concurrent = concurrent
        self.served = 0
        self.waiting: list[_Waiting] = []
        # who may call what (common/roles.py), checked before a handler runs; the caller of the request being
        # handled is `caller` (a handler that checks more, the orchestrator's hello, reads it)
        self.peers = PeerCache(endpoint)
        self.permits = {op: roles.permitted(op) for op in messages.OPS}
        self.self_ops = frozenset(op for op in messages.OPS if roles.needs_self(op))
        self.caller: Peer = Peer(None, "")
        self.refused: dict[str, int] = {}  # "op caller" -> calls refused
        self.on_refused = on_refused  # (op, caller, times, reason): told at the first refusal, then every ALERT_EVERY_S
        self._told: dict[str, float] = {}

    def serve_ready(self, limit: int = 100) -> int:
        """Answer the requests waiting now (or park their Deferred); never blocks."""
        n = 0
        sock = self.sock
        for i in range(limit):
            # called when the poller saw a request: try the first one at once; the next ones only when EVENTS says
            # one is waiting (one option read is cheaper than a zmq.Again, and one request per call is the rule)
            if i and not sock.get(_EVENTS) & _POLLIN:
                break
            got = _recv_with_first(sock)
            if got is None:
                break
            frames, first = got
            caller = self.peers.frame_peer(sock, first)
            if not self.concurrent:
                answer = self._answer(frames, [], caller)
                assert answer is not None  # a REP handler cannot defer
                sock.send(answer)
            else:
                try:
                    split = frames.index(b"")  # ROUTER: [identity..., empty delimiter, request]
                except ValueError:
                    self.errors.record(wire.WireError(wire.BAD_FRAMES, "no envelope delimiter"), "ROUTER")
                    continue  # not a REQ peer: nobody to answer
                route = frames[: split + 1]
                reply = self._answer(frames[split + 1:], route, caller)
                if reply is not None:
                    sock.send_multipart([*route, reply])
            n += 1
        self.served += n
        return n

    def flush(self, now: float) -> int:
        """Send the replies of the Deferred answers that are done (or past their deadline)."""
        if not self.waiting:
            return 0
        sent, still = 0, []
        for w in self.waiting:
            d = w.deferred
            if d.future.done():
                reply = self._finish(w)
            elif d.deadline is not None and now >= d.deadline:
                d.future.cancel()
                reply = wire.encode_error(w.req_id, "timeout", f"{d.what or w.op}: no result in time")
            else:
                still.append(w)
                continue
            self.sock.send_multipart([*w.route, reply])
            sent += 1
        self.waiting = still
        return sent

    def abandon(self, code: str, message: str) -> None:
        """Answer every Deferred still waiting with an error (the process is stopping)."""
        for w in self.waiting:
            w.deferred.future.cancel()
            self.sock.send_multipart([*w.route, wire.encode_error(w.req_id, code, f"{w.op}: {message}")])
        self.waiting = []

    def _finish(self, w: _Waiting) -> bytes:
        try:
            return wire.encode_reply(w.req_id, w.deferred.finish(w.deferred.future))
        except OpError as err:
            return wire.encode_error(w.req_id, err.code, err.message)
        except Exception as exc:  # a handler bug must not kill the service; it is logged in full
            log.exception("deferred handler for %s failed", w.op)
            return wire.encode_error(w.req_id, wire.HANDLER_ERROR, f"{type(exc).__name__}: {exc}")

    def _answer(self, frames: list[bytes], route: list[bytes], caller: Peer) -> bytes | None:
        try:
            req = wire.decode_request(frames)
        except wire.RequestError as err:
            self.errors.record(err, "REP")
            return wire.encode_error(err.req_id, err.code, err.message)
        except wire.WireError as err:
            self.errors.record(err, "REP")
            return wire.encode_error("", err.code, err.message)
        handler = self.handlers.get(req.op)
        if handler is None:  # an op of the wire, but another service's: counted like a malformed request
            err = wire.RequestError(req.id, wire.UNKNOWN_OP, f"this service does not answer '{req.op}'")
            self.errors.record(err, "REP")
            return wire.encode_error(req.id, err.code, err.message)
        op = req.op
        if caller.role not in self.permits[op]:
            return self._refuse(req, caller, f"'{op}' may be called by {roles.describe(op)}, not by {caller}")
        if op in self.self_ops and not roles.is_self(caller.name, caller.role, getattr(req.args, "service", "")):
            return self._refuse(req, caller, f"'{op}' for '{getattr(req.args, 'service', '')}' may be sent by "
                                             f"that service only, not by {caller}")
        self.caller = caller
        try:
            result = handler(req.args)
            if isinstance(result, Deferred):
                if not self.concurrent:
                    raise TypeError("a Deferred answer needs a concurrent Responder")
                self.waiting.append(_Waiting(route, req.id, req.op, result))
                return None
            return wire.encode_reply(req.id, result)
        except Forbidden as err:  # the handler's own check of the caller (the orchestrator's hello)
            return self._refuse(req, caller, err.message)
        except OpError as err:
            return wire.encode_error(req.id, err.code, err.message)
        except Exception as exc:  # a handler bug must not kill the service; it is logged in full
            log.exception("handler for %s failed", req.op)
            return wire.encode_error(req.id, wire.HANDLER_ERROR, f"{type(exc).__name__}: {exc}")

    def _refuse(self, req: wire.Request, caller: Peer, reason: str) -> bytes:
        """A call its caller may not make: answered ``forbidden``, counted per (op, caller), logged (the log's
        rate limit per kind holds) and told to ``on_refused`` (first time, then every ALERT_EVERY_S per key)."""
        key = f"{req.op} {caller.name}"
        if key not in self.refused and len(self.refused) >= MAX_REFUSED_KEYS:
            key = f"{req.op} other"
        n = self.refused[key] = self.refused.get(key, 0) + 1
        log.warning("refused %s: %s", key, reason)
        now = time.monotonic()
        if self.on_refused is not None and now >= self._told.get(key, 0.0):
            self._told[key] = now + ALERT_EVERY_S
            try:
                self.on_refused(req.op, caller, n, reason)
            except Exception:  # telling must not stop the answer
                log.exception("on_refused failed")
        return wire.encode_error(req.id, roles.FORBIDDEN, reason)

    def close(self) -> None:
        self.sock.close()


class OpError(Exception):
    """Raised by a handler to answer a clear error (``ok: false``) with a code of its own."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Forbidden(OpError):
    """Raised by a handler whose own check refuses the caller (``request``'s caller: ``Responder.caller``): the
    Responder answers, counts and tells it as a refused call."""

    def __init__(self, message: str):
        super().__init__(roles.FORBIDDEN, message)
