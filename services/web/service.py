"""``oracle web`` / supervisord's program ``web``: the read-only dashboard (the shell: sockets, clock, threads).

Off the trading path: no boot step, no handshake, not watched by the orchestrator; its crash changes nothing for
trading. It SUBscribes to the streams it shows (a bounded receive queue: a publisher never waits for it, a message
it lost shows as a gap and is counted), reads the history once at start (the orchestrator's status, the store's
running session with its trades, signals and events through persistence's ``query``, the connector's book through
``positions``; the status and the session again every few seconds until the boot is over), folds everything into one
``view.Dashboard`` in this thread, and hands the browsers its changes (server.py) at most every
``web.update_interval_s``. It never asks a service anything per page view.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
import time
from typing import Any

import orjson
import zmq

from common import auxiliary, bus, config, keys, messages, wire
from services.web import access
from services.web.server import DashboardServer, Hub, load_static
from services.web.view import Dashboard

log = logging.getLogger("oracle.web")

NAME = "web"
PREFIXES = ["hb.", "sys.state", "alert.", "bar.", "bars.", "signal.", "signals.", "ack.", "fill.", "closed.",
            "account", "conn.", "paper.trade.", "paper.metrics."]
SUB_HWM = 10_000  # messages queued for this process at most; past it the publisher drops for us (a gap, counted)
RETRY_S = 5.0  # history not read yet (the system is booting): asked again this often
HISTORY_ROWS = 10_000  # the store's own cap on one query


class Web:
    def __init__(self, cfg: config.Config, token: str, host: str, port: int):
        self.cfg, self.token = cfg, token
        w = cfg.web
        self.view = Dashboard(curve_points=w.curve_points, alert_count=w.alerts)
        self.hub = Hub(w.max_clients, w.client_queue)
        self.ctx = zmq.Context()
        self.errors = bus.WireErrors(NAME)
        self.sub = bus.Subscriber(self.ctx, cfg.publishers().values(), PREFIXES, self.errors, hwm=SUB_HWM)
        self.http = DashboardServer((host, port), self.hub, token, load_static())
        self.stop = threading.Event()
        self.counts = {"messages": 0, "gaps": 0, "missed": 0}
        self.answers: queue.SimpleQueue = queue.SimpleQueue()  # (what, answer, note) from the history thread
        self.notes: dict[str, str] = {}  # what could not be read yet, in words
        self.history = threading.Thread(target=self._read_history, name="history", daemon=True)

    def url(self) -> str:
        return self.http.url()

    # ---- history, once (its own thread: the loop never waits for an answer) --------------------------------
    def _ask(self, service: str, op: str, args: Any) -> Any:
        req = bus.Requester(self.ctx, self.cfg.endpoint(service, "rep"), NAME, self.cfg.web.history_timeout_ms)
        try:
            return req.call(op, args)
        finally:
            req.close()

    def _query(self, table: str, where: dict, limit: int = HISTORY_ROWS) -> list[dict]:
        return self._ask("persistence", "query", messages.QueryArgs(table, where, limit)).records

    def _read_history(self) -> None:
        """What the streams cannot tell a late joiner, each asked until it is answered (every RETRY_S): the
        orchestrator's status (again until the boot is over), the connector's book, the store's running session
        with its trades, signals and events. The answers go to the loop (``answers``), which alone folds them."""
        due = {"status": self._read_status, "book": self._read_book, "session": self._read_session}
        while due and not self.stop.is_set():
            for what, read in list(due.items()):
                try:
                    answer, done = read()
                except (bus.RequestTimeout, bus.RequestFailed, wire.WireError) as exc:
                    self.answers.put((what, None, f"{what}: {exc}"))
                    continue
                if answer is not None:
                    self.answers.put((what, answer, ""))
                if done:
                    del due[what]
            self.stop.wait(RETRY_S)

    def _read_status(self) -> tuple[Any, bool]:
        report = self._ask("orchestrator", "status", messages.NoArgs())
        return report, report.system != messages.BOOTING  # once booted: every service known, its restarts counted

    def _read_book(self) -> tuple[Any, bool]:
        return self._ask("connector", "positions", messages.NoArgs()), True

    def _read_session(self) -> tuple[Any, bool]:
        sessions = self._query("sessions", {"status": "RUNNING"}, 1)
        if not sessions:
            return None, False  # booting: no session yet
        where = {"session_id": sessions[0]["session_id"]}
        trades = self._query("trades", where)
        signals = self._query("signals", where, self.cfg.web.curve_points * 4)
        events = self._query("events", where, self.cfg.web.alerts * 4)
        return (sessions[0], trades, signals, events), True

    def _take_answers(self) -> bool:
        took = False
        while True:
            try:
                what, answer, note = self.answers.get_nowait()
            except queue.Empty:
                self.view.history_note = "; ".join(self.notes.values())
                return took
            took = True
            if note:
                self.notes[what] = note
                log.info("history not read yet (asked again in %.0f s): %s", RETRY_S, note)
                continue
            self.notes.pop(what, None)
            view = self.view
            if what == "status":
                view.load_status(answer)
            elif what == "book":
                view.load_positions(answer)
            else:
                session, trades, signals, events = answer
                view.load_session(session)
                view.load_history(trades, signals)
                view.load_events(list(reversed(events)))  # the store answers newest first
                log.info("history: session %s, %d trades, %d signals, %d events", view.session_id, len(trades),
                         len(signals), len(events))

    # ---- the loop -------------------------------------------------------------------------------------------
    def run(self) -> int:
        threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.5}, name="http",
                         daemon=True).start()
        self.history.start()
        interval = self.cfg.web.update_interval_s
        next_push = 0.0
        dirty = True
        try:
            while not self.stop.is_set():
                dirty |= self._take_answers()
                if self.sub.sock.poll(max(1, int((next_push - time.monotonic()) * 1000))):
                    dirty |= self._drain()
                now = time.monotonic()
                if now >= next_push:
                    self._push(dirty)
                    dirty = False
                    next_push = now + interval
        finally:
            self.close()
        return 0

    def _drain(self) -> bool:
        got = self.sub.drain(2000)
        for r in got:
            seen = r.seen
            if seen.delivery.value == "gap":
                self.counts["gaps"] += 1
                self.counts["missed"] += seen.missed
            self.view.apply(r.envelope.body, r.envelope.ts / 1e9)
        self.counts["messages"] += len(got)
        return bool(got)

    def _push(self, dirty: bool) -> None:
        wanted = self.hub.wants_snapshot()
        if not dirty and not wanted:
            return
        self.view.counters = {**self.counts, **self.hub.counts(), "wire_errors": sum(self.errors.counts.values())}
        wall = time.time()
        snapshot = orjson.dumps(self.view.snapshot(wall)) if wanted else None  # before update(): it keeps the marks
        update = orjson.dumps(self.view.update(wall)) if dirty else None
        self.hub.publish(update, snapshot)

    def close(self) -> None:
        self.stop.set()
        if self.history.is_alive():  # a request in flight ends within its timeout; its socket is its thread's
            self.history.join(self.cfg.web.history_timeout_ms / 1000 + 1)
        self.http.stopping.set()
        self.http.shutdown()
        self.http.server_close()
        self.sub.close()
        bus.release(self.ctx)
        self.ctx.destroy(linger=0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="oracle web", description="The read-only dashboard: services, symbols, "
                                "positions, PnL, the session's equity curve (real and paper), drift, alerts, live. "
                                "Serves http://127.0.0.1:8088/ by default (web.host, web.port); any other host "
                                "needs a token in the environment variable named by web.token_env.")
    config.add_arguments(p)
    p.add_argument("--host", default=None, help="bind address (default web.host: 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default web.port: 8088; 0: any free port)")
    p.add_argument("--log-level", default=os.environ.get("ORACLE_LOG_LEVEL"),
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="overrides logging.level")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = auxiliary.start(NAME, args)
    if cfg.web.nice:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, cfg.web.nice)
        except OSError as exc:  # e.g. a container that forbids it: slower under load, not wrong
            log.warning("cannot set CPU priority nice %d: %s", cfg.web.nice, exc)
    host = args.host if args.host is not None else cfg.web.host
    port = args.port if args.port is not None else cfg.web.port
    if not 0 <= port <= 65535:
        print(f"web: --port {port}: not a port (0..65535)", file=sys.stderr)
        return 2
    try:
        token = access.required_token(host, cfg.web.token_env, dict(os.environ))
        keys.secure_process(cfg, NAME)  # wire.curve: this process's key `web` (oracle keys init --only web)
    except (access.AccessError, config.ConfigError) as exc:
        print(f"web: {exc}", file=sys.stderr)
        return 2
    try:
        web = Web(cfg, token, host, port)
    except OSError as exc:
        print(f"web: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: web.stop.set())
    print(f"oracle web: serving the dashboard on {web.url()}" + (" (token required)" if token else ""), flush=True)
    log.info("serving on %s%s", web.url(), " (token required)" if token else "")
    return web.run()
