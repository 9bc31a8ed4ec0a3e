"""The service runtime every process runs on.

Lifecycle: bind sockets -> ``hello`` to the orchestrator -> ``wait`` (ask again) or ``go STEP``
(do it, report ``ready``) -> ... -> ``run``. A heartbeat goes out every second from the first
moment, with progress counters; SIGTERM/SIGINT stop the loop gracefully (``on_stop``), and a
timer forces the exit if that takes too long.

The loop is single-threaded around one zmq poller: the REP socket, the SUB socket, the
orchestrator and persistence REQ sockets and any socket a service adds (``add_reader``) are all
polled, so a slow peer never blocks heartbeats. While a lifecycle step runs (a warmup can take
seconds), a helper thread keeps the heartbeats going and reports the step and how long it runs.
Subclasses are the imperative shell of each service and override the ``on_*`` hooks. The handshake and the
steps are in lifecycle.py, the sending of records to persistence (``persist``, the outbox's spool) in
outbox_sender.py; ``Service`` is put together from them.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import inspect
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import psutil
import zmq

from common import bus, config, failure, keys, logs, messages, preflight, private, trace, wire
from common.bus import Received
from common.lifecycle import VERSION, Lifecycle, PermanentFailure, StepFailed
from common.outbox import Outbox
from common.outbox_sender import OutboxSender
from common.peer import Peer

__version__ = VERSION
__all__ = ["PermanentFailure", "Service", "StepFailed", "main", "parse_args"]

log = logging.getLogger("oracle.runtime")


class Service(Lifecycle, OutboxSender):
    name = ""
    handshake = True  # False only for the orchestrator itself
    concurrent_requests = False  # True: a ROUTER; handlers may answer later (bus.Deferred), requests overlap
    # topic prefixes to subscribe to, per publishing service
    subscribe_to: dict[str, list[str]] = {"orchestrator": [messages.SYS_STATE_TOPIC]}
    # the record of its status report (common/messages/status.py): the common part and ``status_report()``'s fields
    status_record: ClassVar[type[messages.ProcessStatus]] = messages.ProcessStatus
    # what this process does not do yet, stated plainly in its status
    not_implemented: list[str] = []
    # the lifecycle steps this service does: step name -> the name of its method doing it, which takes no argument
    # or one (the step's args) and returns facts for the log; checked when the class is made
    steps: Mapping[str, str] = {}
    _step_takes_args: dict[str, bool] = {}
    # the longest the loop sleeps with nothing due that the runtime knows of (`poll_timeout_ms`'s default): on_tick
    # runs at least this often. None: no short poll, the loop sleeps until the next thing due (the heartbeat, the
    # handshake's and the requests' deadlines, what `poll_timeout_ms` declares) or a message, for a service whose
    # on_tick timers are all declared in its `poll_timeout_ms`
    idle_poll_ms: ClassVar[int | None] = 100
    # > 0: once the SUB socket has delivered, it is read again only this many ms later (not polled meanwhile), so
    # the messages of a burst (a bar's signals, published one model at a time) are drained together in one loop
    # pass instead of waking the loop one by one; for a service whose messages are on no latency path (paper)
    sub_gather_ms: ClassVar[float] = 0.0
    # with sub_gather_ms: True, the burst's first message is not read at once either (the loop only notes it): the
    # whole burst is read at the gathering's end, after the burst's moment, when the services on the latency path
    # that woke with it are done (a service whose work on a message may wait: paper)
    sub_gather_first: ClassVar[bool] = False

    @classmethod
    def program(cls, cfg: config.Config) -> str:
        """This process's program name (its key's name with wire.curve): the service's, or a shard's."""
        return cls.name

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        takes: dict[str, bool] = {}
        for step, method_name in cls.steps.items():
            method = getattr(cls, method_name, None)
            if not callable(method):
                raise TypeError(f"{cls.__name__}.steps: step {step!r} names {method_name!r}, not a method of it")
            params = list(inspect.signature(method).parameters.values())[1:]  # past self
            if len(params) > 1:
                raise TypeError(f"{cls.__name__}.{method_name} (step {step!r}) takes more than the step's args")
            takes[step] = bool(params)
        cls._step_takes_args = takes

    def __init__(self, cfg: config.Config, dry_run: bool = False):
        self.cfg = cfg
        self.dry_run = dry_run
        self.pid = os.getpid()
        self.epoch = bus.new_epoch()
        self.started_mono = time.monotonic()
        self._permanent = ""  # a step's PermanentFailure: the process exits with it, not to be restarted
        self.state = messages.S_WAITING
        self.steps_done: list[str] = []
        self.progress: dict[str, int] = {}
        self.system_state = ""
        self.errors = bus.WireErrors(self.name)
        self._stop = False
        self._proc = psutil.Process(self.pid)
        self._statm = _open_statm()  # the RSS read from it (a read of a few bytes): psutil costs ~10x more per beat
        self._page_size = os.sysconf("SC_PAGE_SIZE") if self._statm >= 0 else 0
        self._heap_free = heap_free_bytes() or 0  # the heaps' free space after the last trim (TRIM_GROWTH_BYTES)
        self._denied_alerted = 0  # CURVE handshakes refused (unknown keys) already alerted, and when next
        self._next_denied_alert = 0.0
        self.ctx = zmq.Context()
        self.pub: bus.Publisher | None = None
        self.rep: bus.Responder | None = None
        self.sub: bus.Subscriber | None = None
        self.orch: bus.Requester | None = None
        self._next_hb = 0.0
        self._next_hello = 0.0
        self._orch_silent_logged = False
        # records for persistence, kept until acknowledged, gathered a few ms before they leave (outbox_sender.py)
        self.outbox = Outbox(quiet_s=self.outbox_quiet_ms / 1000, linger_s=self.outbox_linger_ms / 1000)
        self._spool: int | None = None  # the outbox's file (fd): what a killed process had not got acknowledged
        self._store: bus.Requester | None = None
        self._store_retry_at = 0.0
        self._store_refusal = ""
        self._step: tuple[str, float] | None = None  # the step running now, and since when
        self._readers: dict[zmq.Socket | int, Callable[[], None]] = {}
        self._poller: zmq.Poller | None = None
        self._sub_due: float | None = None  # sub_gather_ms: the SUB socket is not polled, and is read at this time

    # ---- hooks ----------------------------------------------------------------------------
    def on_step(self, step: str, args: dict) -> dict:
        """Do one lifecycle step by the `steps` table (raise StepFailed with the reason); return facts for the log."""
        method_name = self.steps.get(step)
        if method_name is None:
            known = ", ".join(self.steps) or "none"
            raise StepFailed(f"{self.name} has no step '{step}' (its steps: {known})")
        method = getattr(self, method_name)
        return method(args) if self._step_takes_args[step] else method()

    def on_message(self, received: Received) -> None:
        """A message from a subscribed publisher (already decoded and sequence-checked)."""

    def on_tick(self, now: float) -> None:
        """Called every loop turn (at least every ``idle_poll_ms``, unless that is None)."""

    def on_stop(self) -> None:
        """Graceful stop work (flush, disconnect); called once, in the loop thread."""

    def ops(self) -> dict[str, Callable[[Any], Any]]:
        """Extra REP operations of this service."""
        return {}

    def status_report(self) -> dict[str, Any]:
        """This service's own fields of its status report: those of ``status_record`` past the common part."""
        return {}

    def health_info(self) -> dict:
        """Facts for the orchestrator's health checks (connected, symbols, backlog)."""
        return {}

    def pending_work(self) -> int:
        return 0

    def gather_more(self) -> bool:
        """With ``sub_gather_ms``: after a drain, is more of the burst to come (True: the SUB socket is left unpolled
        until the gathering's end)? False: what the burst was to bring is here (a service that knows its burst's
        size), and the socket stays polled: no wake at the gathering's end for nothing."""
        return True

    def awaited_sockets(self) -> list[zmq.Socket]:
        """Sockets of this service's own requests in flight, whose answers wake the loop (asked every turn)."""
        return []

    def poll_timeout_ms(self) -> int:
        """How long the loop may sleep when nothing arrives (the runtime's own deadlines, the heartbeat's, the
        handshake's and the requests', cut it shorter: a service need not count them). A Deferred answer's future
        completes in another thread, which should wake the loop (add_reader); the short poll is the fallback."""
        if self.rep is not None and self.rep.waiting:
            return 5
        return NO_SHORT_POLL_MS if self.idle_poll_ms is None else self.idle_poll_ms

    # ---- helpers for subclasses -----------------------------------------------------------
    def count(self, counter: str, n: int = 1) -> None:
        self.progress[counter] = self.progress.get(counter, 0) + n

    def publish(self, topic: str, body: Any) -> int:
        assert self.pub is not None
        return self.pub.publish(topic, body)

    def alert(self, kind: str, severity: str, message: str, **details) -> None:
        logs.event(log, logging.WARNING, f"alert {kind}: {message}", **details)
        self.publish(messages.alert_topic(kind), messages.Alert(kind, severity, message, self.name, details))

    def _on_refused(self, op: str, caller: Peer, times: int, reason: str) -> None:
        """A call refused for its caller's role (common/roles.py): alerted, for the orchestrator and the store."""
        if self.pub is not None:
            self.alert("forbidden", "warning", f"{self.name} refused {reason}", op=op, caller=caller.name,
                       role=caller.role or "", pid=caller.pid or 0, uid=-1 if caller.uid is None else caller.uid,
                       times=times)

    def add_reader(self, sock: zmq.Socket | int, on_readable: Callable[[], None]) -> None:
        """Poll one more socket or file descriptor in the loop (e.g. a pipe a thread writes to, to wake the
        loop); ``on_readable`` is called in the loop thread when it is readable."""
        self._readers[sock] = on_readable
        if self._poller is not None:
            self._poller.register(sock, zmq.POLLIN)

    def ask(self, req: bus.Requester, op: str, args: Any, timeout_ms: int, what: str = "") -> Any:
        """One request on ``req``, heartbeats going on while it waits (Lazy Pirate: a reply given up on, or a
        broken one, resets the socket). RequestTimeout / RequestFailed / WireError on failure; ``what`` prefixes
        the error message of a failed reply."""
        if req.pending is not None:
            req.reset()
        req.send(op, args, timeout_ms)
        while True:
            assert req.sock is not None
            try:
                reply = req.take_reply()  # raises RequestTimeout at the deadline
            except wire.WireError:
                req.reset()
                raise
            if reply is not None:
                if not reply.ok:
                    raise bus.RequestFailed(op, reply.error_code, f"{what}{': ' if what else ''}{reply.error_message}")
                return reply.result
            self._await_reply(req)
            self.beat_if_due()

    def _await_reply(self, req: bus.Requester) -> None:
        """``ask``'s wait: until ``req``'s reply may have come, at most 100 ms (a heartbeat may be due)."""
        assert req.sock is not None
        req.sock.poll(100, zmq.POLLIN)

    def beat_soon(self) -> None:
        """Beat at the loop's next turn: a fact the heartbeat carries (``health_info``) changed, and the orchestrator's
        view should have it now, not up to a heartbeat interval later."""
        self._next_hb = 0.0

    def beat_now(self) -> None:
        """Beat in this loop pass: a burst of work is done (the heartbeat's ``pending`` is back to 0), and a
        subscriber should see it now, not up to a heartbeat interval later (the periodic beat is put off by one)."""
        self._heartbeat(time.monotonic())

    def beat_if_due(self) -> None:
        """Long work (warmup, replays) calls this so heartbeats keep going."""
        now = time.monotonic()
        if now >= self._next_hb:
            self._heartbeat(now)

    # ---- status ---------------------------------------------------------------------------
    def uptime(self) -> float:
        return time.monotonic() - self.started_mono

    def rss(self) -> int:
        if self._statm >= 0:
            try:
                return int(os.pread(self._statm, 256, 0).split()[1]) * self._page_size  # size resident shared ...
            except (OSError, ValueError, IndexError):
                pass
        try:
            return self._proc.memory_info().rss
        except psutil.Error:
            return 0

    def _status(self, _args: Any) -> messages.ProcessStatus:
        counts = self.sub.tracker.counters() if self.sub else {"gaps": 0, "missed": 0, "restarts": 0, "dropped": 0}
        common = {
            "service": self.name,
            "pid": self.pid,
            "epoch": self.epoch,
            "version": VERSION,
            "state": self.state,
            "uptime_s": round(self.uptime(), 3),
            "rss_bytes": self.rss(),
            "steps": list(self.steps_done),
            "progress": dict(self.progress),
            "wire_errors": self._wire_errors(),
            "sequence": messages.SequenceCounts(**counts),
            "system_state": self.system_state,
            "dry_run": self.dry_run,
            "not_implemented": list(self.not_implemented),
            "outbox": messages.OutboxCounts(pending=len(self.outbox), acked=self.outbox.acked,
                                            rejected=len(self.outbox.rejected)),
            "refused": dict(self.rep.refused) if self.rep is not None else {},
        }
        # the record's constructor refuses a missing or unknown field, and a service field named like a common one
        return self.status_record(**common, **self.status_report())

    def _wire_errors(self) -> dict[str, int]:
        """Malformed frames by kind, and the CURVE handshakes refused for an unknown key (``curve_denied``)."""
        denied = bus.curve_denials()
        return {**self.errors.counts, "curve_denied": denied} if denied else dict(self.errors.counts)

    def _alert_denials(self, now: float) -> None:
        """Handshakes refused for an unknown key (in the ZAP thread) since the last alert: one alert, at most every
        DENIAL_ALERT_EVERY_S, so a peer retrying its handshake does not flood the bus."""
        denied = bus.curve_denials()
        if denied > self._denied_alerted and now >= self._next_denied_alert:
            self.alert("curve_denied", "warning", f"{self.name} refused {denied - self._denied_alerted} CURVE "
                       f"handshake(s) from unknown keys ({denied} in all; the keys are in its log)", denied=denied)
            self._denied_alerted = denied
            self._next_denied_alert = now + DENIAL_ALERT_EVERY_S

    def _trimmed(self) -> int:
        """The RSS, after giving the heaps' free pages back when their free space grew TRIM_GROWTH_BYTES since the
        last trim (memory freed, e.g. after a burst of hostile peers: not a legitimate growth, which is in use)."""
        free = heap_free_bytes()
        if free is not None:
            if free > self._heap_free + TRIM_GROWTH_BYTES:
                give_back_free_pages()
                free = heap_free_bytes() or 0
            self._heap_free = min(self._heap_free, free) if free <= self._heap_free + TRIM_GROWTH_BYTES else free
        return self.rss()

    def _heartbeat(self, now: float, step_beats: int = 0) -> None:
        self._next_hb = now + self.cfg.runtime.heartbeat_interval_s
        rss = self._trimmed()
        self._alert_denials(now)
        info = {**self.health_info(), **({"outbox": len(self.outbox)} if len(self.outbox) else {})}
        progress = dict(self.progress)
        step = self._step
        if step is not None:
            info["step"] = step[0]
            info["step_running_s"] = round(now - step[1], 3)
            progress["step_beats"] = step_beats  # a long step is progress, not a stall
        hb = messages.Heartbeat(
            service=self.name,
            pid=self.pid,
            epoch=self.epoch,
            state=self.state,
            uptime_s=round(self.uptime(), 3),
            rss_bytes=rss,
            steps=list(self.steps_done),
            progress=progress,
            pending=self.pending_work(),
            wire_errors=self._wire_errors(),
            info=info,
        )
        self.publish(messages.hb_topic(self.name), hb)

    # ---- the loop -------------------------------------------------------------------------
    def _on_sys_state(self, received: Received) -> None:
        body = received.envelope.body
        if isinstance(body, messages.SysState):
            self.system_state = body.state

    def request_stop(self, *_: Any) -> None:
        self._stop = True

    def run(self) -> int:
        """Bind, handshake, serve until stopped. Returns the process exit code."""
        self._fatal = ""
        handlers = {
            messages.OP_STATUS.name: self._status,
            messages.OP_PING.name: lambda _a: messages.Pong(self.name, self.epoch),
            messages.OP_STEP.name: self._on_step_request,
        }
        handlers.update(self.ops())
        try:
            self.pub = bus.Publisher(self.ctx, self.cfg.endpoint(self.name, "pub"), self.name, self.epoch)
            self.rep = bus.Responder(self.ctx, self.cfg.endpoint(self.name, "rep"), handlers, self.errors,
                                     concurrent=self.concurrent_requests, on_refused=self._on_refused)
        except zmq.ZMQError as exc:
            log.error("cannot bind %s endpoints: %s", self.name, exc)
            return 1
        self._restore_outbox()
        if self.subscribe_to:
            prefixes = sorted({p for ps in self.subscribe_to.values() for p in ps})
            endpoints = [self.cfg.endpoint(s, "pub") for s in self.subscribe_to]
            self.sub = bus.Subscriber(self.ctx, endpoints, prefixes, self.errors)
        if not self.handshake:
            self.state = messages.S_RUNNING
        else:
            self.orch = bus.Requester(
                self.ctx, self.cfg.endpoint("orchestrator", "rep"), self.name, self.cfg.runtime.request_timeout_ms
            )
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        wakeup = self._wake_on_signals()
        logs.event(log, logging.INFO, "started", pid=self.pid, epoch=self.epoch, dry_run=self.dry_run)
        try:
            self._loop()
        finally:
            self._shutdown()
            if wakeup is not None:
                wakeup()
        if self._fatal and self._permanent:
            return fail_permanently(self.cfg, self.program(self.cfg), self._permanent, self.started_mono)
        if self._fatal:
            log.error("exiting: %s", self._fatal)
            return 1
        return 0

    def _loop(self) -> None:
        poller = self._poller = zmq.Poller()
        assert self.rep is not None
        poller.register(self.rep.sock, zmq.POLLIN)
        if self.sub:
            poller.register(self.sub.sock, zmq.POLLIN)
        for sock in self._readers:
            poller.register(sock, zmq.POLLIN)
        while not self._stop and not self._fatal:
            store = self._store if self.outbox_answer_wakes else None
            waiting = [r.sock for r in (self.orch, store) if r is not None and r.pending is not None]
            waiting += self.awaited_sockets()
            for sock in waiting:
                poller.register(sock, zmq.POLLIN)
            events = dict(poller.poll(max(0, min(self.poll_timeout_ms(), self._due_ms(time.monotonic())))))
            for sock in waiting:
                poller.unregister(sock)
            now = time.monotonic()
            if self.rep.sock in events:
                self.rep.serve_ready()
            if self.sub and (self.sub.sock in events or (self._sub_due is not None and now >= self._sub_due)):
                self._read_sub(poller, now)
            for sock, on_readable in list(self._readers.items()):
                if sock in events:
                    on_readable()
            self.rep.flush(time.monotonic())
            self._drive_handshake(now)
            self._drive_outbox(now)
            if now >= self._next_hb:
                self._heartbeat(now)
            self.on_tick(now)
            if trace.ON and time.monotonic() - now > 0.001:
                trace.mark("turn", f"{(time.monotonic() - now) * 1000:.2f}ms")

    def _read_sub(self, poller: zmq.Poller, now: float) -> None:
        """Every message waiting on the SUB socket, to ``on_message``; with ``sub_gather_ms``, the socket is then
        left unpolled until the gathering's end (read then, and polled again), unless ``gather_more`` says the burst
        is whole; with ``sub_gather_first`` too, a burst's first message starts the gathering unread."""
        assert self.sub is not None
        if self._sub_due is None and self.sub_gather_first and self.sub_gather_ms > 0:  # a burst's first message
            self._sub_due = now + self.sub_gather_ms / 1000
            poller.unregister(self.sub.sock)
            return
        received = self.sub.drain()
        for r in received:
            if r.envelope.topic == messages.SYS_STATE_TOPIC:
                self._on_sys_state(r)
            self.on_message(r)
        if self._sub_due is not None:  # the gathering's end: polled again (the next message starts another)
            self._sub_due = None
            poller.register(self.sub.sock, zmq.POLLIN)
        elif received and self.sub_gather_ms > 0 and self.gather_more():
            self._sub_due = now + self.sub_gather_ms / 1000
            poller.unregister(self.sub.sock)

    def _due_ms(self, now: float) -> int:
        """Milliseconds until the first of the runtime's own deadlines: the next heartbeat, the handshake's next
        hello or its reply's timeout, the outbox's request's timeout or its next send, once its records are
        gathered, and the end of the SUB socket's gathering, ``sub_gather_ms`` (rounded up: the checks are
        ``now >= deadline``)."""
        due = self._next_hb if self._sub_due is None else min(self._next_hb, self._sub_due)
        orch = self.orch
        if orch is not None:
            if orch.pending is not None:
                due = min(due, orch.pending[2])
            elif self.state != messages.S_RUNNING:
                due = min(due, self._next_hello)
        store = self._store
        if store is not None and store.pending is not None:
            due = min(due, store.pending[2])
        else:
            send_at = self._outbox_due()
            if send_at is not None:
                due = min(due, send_at)
        return math.ceil((due - now) * 1000) if due > now else 0

    def _wake_on_signals(self) -> Callable[[], None] | None:
        """A signal (SIGTERM: supervisord's stop) wakes the loop at once: the C handler writes a byte on a pipe the
        loop polls (``signal.set_wakeup_fd``); a poll interrupted by a signal goes on after the handler ran, so a
        quiet loop would stop only at its next deadline (up to a heartbeat interval). Returns what undoes it (None:
        not the main thread, which alone receives signals)."""
        if threading.current_thread() is not threading.main_thread():
            return None
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self.add_reader(r, lambda: _drain_pipe(r))
        before = signal.set_wakeup_fd(w, warn_on_full_buffer=False)

        def undo() -> None:
            signal.set_wakeup_fd(before)
            os.close(r)
            os.close(w)

        return undo

    def _shutdown(self) -> None:
        watchdog = threading.Timer(self.cfg.runtime.stop_timeout_s, _force_exit)
        watchdog.daemon = True
        watchdog.start()
        self.state = messages.S_STOPPING
        logs.event(log, logging.INFO, "stopping")
        if self._fatal and self.orch is not None and self.orch.pending is not None:
            self.orch.sock.poll(1000)  # let the failed step's report reach the orchestrator before we exit
        if self.rep is not None:
            self.rep.flush(time.monotonic())
            self.rep.abandon("stopping", f"{self.name} is stopping; ask again")
        try:
            self.on_stop()
        except Exception:
            log.exception("on_stop failed")
        if self.pub:
            self._heartbeat(time.monotonic())
        self._flush_outbox()
        for part in (self.orch, self._store, self.sub, self.rep, self.pub):
            if part is not None:
                part.close()
        bus.release(self.ctx)  # the ZAP authenticator's socket, else term() waits for it
        self.ctx.term()
        if self._statm >= 0:
            os.close(self._statm)
            self._statm = -1
        logs.event(log, logging.INFO, "stopped")


NO_SHORT_POLL_MS = 3_600_000  # `idle_poll_ms = None`: the runtime's deadlines and poll_timeout_ms's bound the sleep


def _drain_pipe(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 4096):
            pass


def _open_statm() -> int:
    """A descriptor of /proc/self/statm (Linux), or -1 (psutil then)."""
    try:
        return os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1


# glibc's malloc serves a block of this size or more by its own mmap, returned to the system when freed. Left to
# itself, glibc raises that threshold after each such free (up to 32 MB), and a 20 MB frame refused later (a hostile
# one: the wire's limits) then stays in the heap, and in the RSS, after it is freed. glibc's own starting value
# (128 KB), not 1 MB: hostile requests of 0.1-1 MB from many peers at once stayed in the heap (the hostile suite).
LARGE_BLOCK_BYTES = 128 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt's parameter (malloc.h); setting it fixes the threshold


def return_large_blocks() -> bool:
    """Fix glibc's mmap threshold at LARGE_BLOCK_BYTES (True), or leave another libc alone (False)."""
    try:
        return bool(ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES))
    except (OSError, AttributeError):
        return False


# A burst of peers each with a request in flight (the hostile suite's fresh REQ per frame: 1000 connections, 32 MB)
# leaves the heaps of the loop and of ZeroMQ's I/O thread large and fragmented once it is freed: RSS 20-38 MB up for
# good (a subscriber's junk subscriptions too, once it is gone: 85-100 MB). When the heaps' free space has grown this
# much since the last trim, a heartbeat gives their free pages back (malloc_trim: 0.02-0.4 ms with the preditor's
# models loaded; glibc's mallinfo2, read each heartbeat, costs less).
TRIM_GROWTH_BYTES = 8 * 1024 * 1024
DENIAL_ALERT_EVERY_S = 60.0  # CURVE handshakes refused for unknown keys: alerted at most this often per process


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def _libc_function(name: str, restype: Any) -> Any:
    try:
        fn = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    fn.restype = restype
    return fn


_mallinfo2 = _libc_function("mallinfo2", _MallInfo2)  # glibc 2.33+
_malloc_trim = _libc_function("malloc_trim", ctypes.c_int)


def heap_free_bytes() -> int | None:
    """The free space inside glibc's heaps, all arenas (None: another libc, or a glibc older than 2.33)."""
    return _mallinfo2().fordblks if _mallinfo2 is not None else None


def give_back_free_pages() -> bool:
    """glibc's ``malloc_trim(0)``: every whole free page of every heap returned to the system (False: another libc
    or nothing to give back)."""
    return bool(_malloc_trim(0)) if _malloc_trim is not None else False


def _force_exit() -> None:
    log.error("graceful stop took too long; exiting now")
    os._exit(1)


def parse_args(name: str, argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=f"oracle-{name}", description=f"Oracle Trader {name} service")
    config.add_arguments(p)
    p.add_argument(
        "--log-level",
        default=os.environ.get("ORACLE_LOG_LEVEL"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="overrides logging.level",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        default=os.environ.get("ORACLE_DRY_RUN", "").lower() in ("1", "true", "yes"),
        help="the executor decides everything and sends no order",
    )
    return p.parse_args(argv)


def private_dirs(cfg: config.Config) -> list:
    """The system's own directories (the store, state files, journals, spools, sockets, logs): made private."""
    return [cfg.path(cfg.data_dir), cfg.path(cfg.run_dir), cfg.path(cfg.persistence.sqlite_path).parent,
            cfg.path("var/log")]


def fail_permanently(cfg: config.Config, program: str, cause: str, started_mono: float) -> int:
    """A failure no restart can fix: said once (the log, stderr, and the record the orchestrator and the operator's
    commands read: common/failure.py), then the exit code supervisord does not restart (after the hold)."""
    log.error("cannot start, and a restart cannot fix it: %s", cause)
    print(f"{program}: FAILED: {cause}", file=sys.stderr, flush=True)
    try:
        failure.write(failure.directory(cfg), failure.Failure(program, os.getpid(), cause, time.time()))
    except OSError as exc:
        log.error("cannot write the failure record: %s", exc)
    return failure.hold_then_exit_code(started_mono)


def main(cls: type[Service], argv: list[str] | None = None) -> int:
    started = time.monotonic()
    os.umask(private.PRIVATE_UMASK)  # before anything is made: every file 0600, every directory 0700
    args = parse_args(cls.name, argv)
    try:
        cfg = config.load(args.config, args.overlay)
    except config.ConfigError as exc:
        # permanent too (the same for every process: `oracle check-config` shows it); no record: where it would go
        # is the configuration's
        print(f"{cls.name}: FAILED: {exc}", file=sys.stderr, flush=True)
        return failure.hold_then_exit_code(started)
    logs.setup(cls.name, args.log_level or cfg.logging.level, cfg.logging.format)
    program = cls.program(cfg)
    failure.clear(failure.directory(cfg), program)  # a past life's cause is not this start's
    found = preflight.problems(cfg, os.environ, program)  # the checks of `oracle check-config`, for this program
    if found:
        return fail_permanently(cfg, program, preflight.cause(found), started)
    try:
        keys.secure_process(cfg, program)  # wire.curve: every socket CURVE, or exit naming the missing key
    except config.ConfigError as exc:
        return fail_permanently(cfg, program, str(exc), started)
    return_large_blocks()
    nice = cfg.runtime.nice.get(cls.name, 0)
    if nice:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except OSError as exc:  # e.g. a container that forbids it: slower under load, not wrong
            log.warning("cannot set CPU priority nice %d: %s", nice, exc)
    run_dir = cfg.path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(run_dir, 0o700)
    private.keep_private(private_dirs(cfg))  # what an older version left readable by others
    return cls(cfg, dry_run=args.dry_run or cfg.executor.dry_run).run()
