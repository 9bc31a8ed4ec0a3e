"""The notifier process (supervisord program ``notifier``): hears the system's PUB streams and the store, and sends
what a person should know away from the terminal, to a webhook or a Telegram bot (``notifier`` in the config).

Off the trading path: not booted by the orchestrator, not watched, nothing waits for
it. It only reads: a SUB to every publisher (``alert.``, ``closed.``, ``sys.state``) with a bounded queue
(``sub_hwm``: when it is full ZeroMQ drops for this subscriber only, the publisher never waits; the loss is seen as
a gap in the stream's seq, counted and itself notified), and the persistence's read-only ``query`` op, every
``store_poll_s`` (0.5 s while the system is STOPPING, and once more when the notifier is stopped: supervisord stops
it first, after the session ended): the session's summary (``SESSION_SUMMARY``), and the alerts (``ALERT``) and
external closes (real CLOSE trades) recorded while it was not listening, under the ids the live ones have.

Every notice is recorded in its own SQLite (store.py) as it is heard; messages are formed at most one per
``interval_s`` from the notices waiting (notices.fold), sent one at a time in order, retried with exponential
backoff (notices.retry_delay: a small loop, no library), and marked sent after a 2xx.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

import zmq

from common import auxiliary, bus, config, keys, logs, messages, wire
from common.sequence import Delivery
from services.notifier import notices as nt
from services.notifier.sinks import HttpRequest, Sink, SinkError, request_for, sink_from
from services.notifier.store import NotifierStore

NAME = "notifier"
PREFIXES = ("alert.", "closed.", messages.SYS_STATE_TOPIC)
# persistence's events of a session's end: the summary at `oracle ctl stop`, and the end itself (a day change too)
SESSION_END_EVENTS = ("SESSION_SUMMARY", "SESSION_ENDED")
ALERT_EVENT = "ALERT"  # persistence's event of an alert heard on the stream (the executor's own are ALERT_<KIND>)
STORE_OVERLAP_S = 60.0  # each read of the store goes back this long before the last one
STORE_QUERY_LIMIT = 500
STORE_TRADES = 100  # the newest real trades read each time (closes while the notifier was down are among them)
MAX_NOTICES = 200  # notices in one message at most (a longer backlog leaves over the next intervals, in order)
STOPPING_POLL_S = 0.5  # the store is asked for the summary this often while the system is STOPPING
STOP_SEND_S = 4.0  # at its stop, the notifier tries this long to send what waits (supervisord's stopwaitsecs: 10)
QUERY_TIMEOUT_MS = 1000

log = logging.getLogger("oracle.notifier")


def post(req: HttpRequest, timeout_s: float) -> tuple[int, str]:
    """POST; (HTTP status, "") or (0, the error) when there was no answer."""
    request = urllib.request.Request(req.url, data=req.body, headers=req.headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # noqa: S310 - http(s) checked at config
            resp.read(65536)
            return resp.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        return 0, f"no answer: {reason}"


class Notifier:
    def __init__(self, cfg: config.Config, sink: Sink, store: NotifierStore, clock: Any = time.time):
        self.cfg, self.sink, self.store, self.clock = cfg, sink, store, clock
        n = cfg.notifier
        self.settings = n
        self.choice = nt.Choice(nt.severities(n.severities), n.external_closes, n.session_summary)
        self.ctx = zmq.Context()
        self.errors = bus.WireErrors(NAME)
        self.sub = bus.Subscriber(self.ctx, [], PREFIXES, self.errors)
        self.sub.sock.setsockopt(zmq.RCVHWM, n.sub_hwm)  # before the connects: every connection's queue bounded
        for endpoint in cfg.publishers().values():
            bus.connect(self.sub.sock, endpoint)
        self.persistence = bus.Requester(self.ctx, cfg.endpoint("persistence", "rep"), NAME, QUERY_TIMEOUT_MS)
        self.system_state = ""
        self.stopping = False
        self.next_try = 0.0  # wall time the pending message may be sent again (after a failure)
        self.next_store_poll = 0.0
        self.counters = {"heard": 0, "duplicates": 0, "missed": 0, "sent": 0, "failed": 0}
        self._last_error = ""
        if self.store.meta("store_since") is None:  # the first start: the store's records before it are no news
            self.store.set_meta("store_since", repr(self.clock()))

    # ---- hearing ------------------------------------------------------------------------------------------
    def hear(self, received: bus.Received) -> None:
        env = received.envelope
        now = self.clock()
        if isinstance(env.body, messages.SysState):
            self.system_state = env.body.state
            return
        if received.seen.delivery == Delivery.GAP:
            self.counters["missed"] += received.seen.missed
            self.take(nt.Notice(nt.derived_id("gap", env.src, env.topic, env.epoch, env.seq), "notifier.missed",
                                "warning", f"WARNING the notifier missed {received.seen.missed} message(s) of "
                                f"{env.src} {env.topic} (its queue was full)", now,
                                {"src": env.src, "topic": env.topic, "missed": received.seen.missed}), now)
        notice = nt.from_published(env, self.choice)
        if notice is not None:
            self.take(notice, now)

    def take(self, notice: nt.Notice, now: float) -> None:
        if self.store.record(notice, now):
            self.counters["heard"] += 1
            logs.event(log, logging.INFO, "heard", kind=notice.kind, id=notice.id)
        else:
            self.counters["duplicates"] += 1

    def poll_store(self, now: float) -> None:
        """Read back from the store what it recorded lately: the session summaries and the alerts since the last
        read (with an overlap: a record may be committed a little after its time), and the newest real trades (their
        times are the broker's clock) for the external closes. What was published while the notifier was not
        listening (down, restarting, its queue full) is found there under the ids the live notices have, so each is
        one notice whichever way it came. At the very first read, what the store holds is no news: recorded, not
        sent."""
        since = float(self.store.meta("store_since") or now)
        start = datetime.fromtimestamp(max(0.0, since - STORE_OVERLAP_S), UTC).isoformat()
        found: list[nt.Notice | None] = []
        try:
            if self.choice.session_summary:  # the summary first: of the two of a session, the one kept
                for event_type in SESSION_END_EVENTS:
                    found += [nt.session_summary(e) for e in self._query("events", event_type=event_type, since=start)]
            found += [nt.from_alert_event(e, self.choice) for e in self._query("events", event_type=ALERT_EVENT,
                                                                                 since=start)]
            if self.choice.external_closes:
                found += [nt.from_trade(t, self.choice) for t in self._query("trades", is_paper=False,
                                                                             limit=STORE_TRADES)]
        except (bus.RequestTimeout, bus.RequestFailed, wire.WireError) as exc:
            level = logging.WARNING if isinstance(exc, bus.RequestFailed) and exc.code != "not_open" else logging.DEBUG
            logs.event(log, level, "store query failed; asked again later", error=str(exc))
            return
        news = self.store.meta("primed") is not None
        for notice in sorted((n for n in found if n is not None), key=lambda n: (n.kind, n.time)):  # stable
            if news:
                self.take(notice, now)
            else:
                self.store.record(notice, now, known=True)
        self.store.set_meta("store_since", repr(now))
        self.store.set_meta("primed", "1")

    def _query(self, table: str, limit: int = STORE_QUERY_LIMIT, **where: Any) -> list[dict]:
        """Records of the store, newest first."""
        result = self.persistence.call(messages.OP_QUERY.name, messages.QueryArgs(table, where, limit),
                                       QUERY_TIMEOUT_MS)
        return list(result.records)

    # ---- sending ------------------------------------------------------------------------------------------
    def form_if_due(self, now: float) -> None:
        if self.store.pending() is not None:
            return  # one message at a time, in order: what comes meanwhile folds into the next
        if not nt.may_form(now, self.store.last_formed(), self.settings.interval_s):
            return
        waiting = self.store.unassigned()[:MAX_NOTICES]
        if waiting:
            self.store.form(nt.fold(waiting, self.settings.max_lines), now)

    def send_if_due(self, now: float, timeout_s: float | None = None) -> bool:
        """Send the pending message when its time has come; True when one was acknowledged."""
        pending = self.store.pending()
        if pending is None or now < self.next_try:
            return False
        req = request_for(self.sink, pending.id, pending.text, pending.payload)
        status, error = post(req, min(self.settings.timeout_s, timeout_s or self.settings.timeout_s))
        after = self.clock()
        if 200 <= status < 300:
            self.store.mark_sent(pending.id, after)
            self.counters["sent"] += 1
            self.next_try = 0.0
            self._last_error = ""
            logs.event(log, logging.INFO, "sent", to=req.label, id=pending.id, notices=pending.payload["count"],
                       status=status)
            return True
        failures = self.store.mark_failed(pending.id, error or f"HTTP {status}")
        self.counters["failed"] += 1
        delay = nt.retry_delay(failures, self.settings.retry_initial_s, self.settings.retry_max_s)
        self.next_try = after + delay
        what = error or f"HTTP {status}"
        level = logging.WARNING if what != self._last_error else logging.DEBUG  # once per kind of failure
        self._last_error = what
        logs.event(log, level, "send failed, kept", to=req.label, id=pending.id, error=what, failures=failures,
                   retry_in_s=round(delay, 3))
        return False

    # ---- the loop -----------------------------------------------------------------------------------------
    def wait_ms(self, now: float) -> int:
        dues = [self.next_store_poll]
        pending = self.store.pending()
        if pending is not None:
            dues.append(self.next_try)
        elif self.store.counts()["waiting"]:
            last = self.store.last_formed()
            dues.append(now if last is None else last + self.settings.interval_s)
        return max(0, min(1000, int((min(dues) - now) * 1000)))

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        counts = self.store.counts()
        logs.event(log, logging.INFO, "notifier running", sink=self.sink.kind, pending=counts["messages_pending"],
                   waiting=counts["waiting"])
        poller = zmq.Poller()
        poller.register(self.sub.sock, zmq.POLLIN)
        while not self.stopping:
            now = self.clock()
            try:
                ready = dict(poller.poll(self.wait_ms(now)))
            except zmq.ZMQError:
                continue  # interrupted by a signal
            if self.sub.sock in ready:
                for received in self.sub.drain(1000):
                    self.hear(received)
            now = self.clock()
            if now >= self.next_store_poll:
                self.poll_store(now)
                poll_s = STOPPING_POLL_S if self.system_state == messages.STOPPING else self.settings.store_poll_s
                self.next_store_poll = now + poll_s
            self.form_if_due(now)
            self.send_if_due(now)
        self._finish()
        return 0

    def _stop(self, *_: Any) -> None:
        self.stopping = True

    def _finish(self) -> None:
        """At the stop: what was heard, the summary of a session that just ended, sent if the endpoint answers
        within STOP_SEND_S (the rest stays pending for the next start)."""
        for received in self.sub.drain(10_000):
            self.hear(received)
        self.poll_store(self.clock())
        deadline = time.monotonic() + STOP_SEND_S
        while time.monotonic() < deadline:
            now = self.clock()
            self.form_if_due(now)
            if self.store.pending() is None and not self.store.counts()["waiting"]:
                break
            if not self.send_if_due(now, max(0.1, deadline - time.monotonic())):
                time.sleep(0.05)
        counts = self.store.counts()
        logs.event(log, logging.INFO, "notifier stopped", **self.counters, pending=counts["messages_pending"],
                   waiting=counts["waiting"])
        self.sub.close()
        self.persistence.close()
        self.store.close()
        self.ctx.term()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="oracle-notifier", description="Oracle Trader notifier (alerts to a webhook)",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    config.add_arguments(p)
    p.add_argument("--log-level", default=os.environ.get("ORACLE_LOG_LEVEL"),
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="overrides logging.level")
    p.add_argument("--dry-run", action="store_true", help="accepted like every program's flags; no effect here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = auxiliary.start(NAME, args)
    try:
        sink = sink_from(cfg, dict(os.environ))
    except SinkError as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)  # one line, in the program's log under supervisord
        return 2
    if sink is None:
        print(f"{NAME}: notifier.sink is none: nothing to send to; exiting (set notifier.sink to webhook or "
              "telegram)", file=sys.stderr)
        return 0
    try:
        keys.secure_process(cfg, NAME)
    except config.ConfigError as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)
        return 2
    store = NotifierStore(cfg.path(cfg.data_dir) / cfg.notifier.db_file)
    return Notifier(cfg, sink, store).run()
