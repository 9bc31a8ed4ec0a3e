"""The dashboard's state, folded from the published streams and the store's history: pure (no socket, no clock, no
file; the shell passes the times in).

- ``Dashboard.apply(body, ts_s)`` folds one decoded message (heartbeats, ``sys.state``, alerts, bars, signals, acks,
  fills, closes, the account, paper trades and metrics);
- ``Dashboard.load_*`` take what the shell read once at start (the orchestrator's status, the store's running
  session, its trades, signals and events, the connector's book);
- ``Dashboard.snapshot(now_s)`` is everything a browser shows, as plain JSON-able values; ``update(now_s)`` the same
  but for the equity curve only the points changed since the last ``update``.

The equity curve has one point per bar time (the bars' own clock, so a replay and a live session read the same):
``real`` is the account's equity (the broker's, the latest known at that bar), ``paper`` is what the account would
be trading as the model does: the session's start balance plus the paper trades closed in the session plus the
models' open (virtual) PnL. Bounded everywhere: ``curve_points`` points, ``alert_count`` alerts, symbols and services
as the system has them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from common import messages

HALT_KINDS = ("halted",)  # alert kinds that are halts (the system's, the risk guard's)
EARLY_CLOSES = 10_000  # closes kept while the history is not read yet (a bound; the boot has none)


def position_words(direction: int, intensity: int = 0) -> str:
    if direction == 0:
        return "FLAT"
    side = "LONG" if direction > 0 else "SHORT"
    return f"{side}{intensity}" if intensity else side


def iso_seconds(text: str | None) -> float | None:
    """Unix seconds of a stored record's UTC time text (``2026-01-02T03:04:05.000000Z``); None when absent."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class ServiceRow:
    state: str = "?"
    pid: int | None = None
    epoch: int | None = None
    uptime_s: float | None = None
    rss_bytes: int | None = None
    restarts: int | None = None
    counted_pid: int | None = None  # the newest process ``restarts`` includes (the report's, then each one heard)
    beat_at: float | None = None  # when its last heartbeat was heard (the shell's clock, s)

    def to_json(self, now_s: float) -> dict[str, Any]:
        return {"state": self.state, "pid": self.pid, "uptime_s": _round(self.uptime_s, 1),
                "rss_mb": None if self.rss_bytes is None else round(self.rss_bytes / 2**20, 1),
                "restarts": self.restarts,
                "hb_age_s": None if self.beat_at is None else round(max(0.0, now_s - self.beat_at), 1)}


@dataclass
class SymbolRow:
    bar_time: int | None = None
    close: float | None = None
    action: int | None = None
    direction: int = 0  # the model's (virtual) position
    intensity: int = 0
    hmm_state: int | None = None
    virtual_pnl: float = 0.0  # the model's open position, marked at the last bar's close
    real: dict[int, tuple[int, float]] = field(default_factory=dict)  # ticket -> (direction, lots) at the broker
    real_pnl: float = 0.0  # net PnL of the real trades closed in the session
    real_trades: int = 0
    paper_pnl: float = 0.0  # PnL of the paper trades closed in the session
    paper_trades: int = 0
    paper_balance: float | None = None
    last_ack: str = ""

    def real_direction(self) -> tuple[int, float]:
        net = sum(d * v for d, v in self.real.values())
        return (0 if abs(net) < 1e-9 else (1 if net > 0 else -1)), round(abs(net), 2)

    def to_json(self) -> dict[str, Any]:
        direction, lots = self.real_direction()
        return {
            "bar_time": self.bar_time, "close": self.close,
            "signal": None if self.action is None else position_words(self.direction, self.intensity),
            "hmm_state": self.hmm_state, "virtual": position_words(self.direction, self.intensity),
            "virtual_pnl": round(self.virtual_pnl, 2), "real": position_words(direction), "real_lots": lots,
            "real_pnl": round(self.real_pnl, 2), "real_trades": self.real_trades,
            "paper_pnl": round(self.paper_pnl, 2), "paper_trades": self.paper_trades,
            "drift": round(self.paper_pnl - self.real_pnl, 2), "last_ack": self.last_ack,
        }


@dataclass
class Point:
    n: int  # the point's number (ever appended): a browser joins the points it has with those it is sent
    t: int  # bar time, Unix s
    real: float | None
    paper: float | None

    def to_json(self) -> list:
        return [self.n, self.t, _round(self.real, 2), _round(self.paper, 2)]


@dataclass
class Dashboard:
    curve_points: int = 2000
    alert_count: int = 50
    system: str = "UNKNOWN"
    system_since: float | None = None
    halted_reason: str = ""
    issues: list[str] = field(default_factory=list)
    services: dict[str, ServiceRow] = field(default_factory=dict)
    symbols: dict[str, SymbolRow] = field(default_factory=dict)
    alerts: deque = field(default_factory=deque)
    balance: float | None = None
    equity: float | None = None
    currency: str = ""
    connected: bool | None = None
    session_id: str = ""
    session_start: float | None = None
    start_balance: float | None = None  # the session's initial balance (else the first balance heard)
    curve: deque = field(default_factory=deque)
    appended: int = 0  # points ever appended (the next point's n)
    changed_from: int | None = None  # the first point's n changed since the last update()
    status_loaded: bool = False  # the orchestrator's report was read (restarts are counted from it on)
    history_loaded: bool = False
    early: list = field(default_factory=list)  # closes heard before the history was read: (key, symbol, paper, pnl)
    resend: bool = False  # the curve was rebuilt (the history came): the next update() is the whole view
    history_note: str = ""  # what could not be read at start, in words
    counters: dict[str, int] = field(default_factory=dict)  # the shell's: messages, gaps, browsers dropped, ...

    # ---- the streams -----------------------------------------------------------------------------------------
    def apply(self, body: Any, ts_s: float) -> None:
        """One decoded message, ``ts_s`` its publication time (the envelope's ``ts``, s)."""
        if isinstance(body, messages.Heartbeat):
            self._beat(body, ts_s)
        elif isinstance(body, messages.SysState):
            self._sys_state(body, ts_s)
        elif isinstance(body, messages.Alert):
            self.add_alert(ts_s, body.severity, body.kind, body.service, body.message)
        elif isinstance(body, messages.BarRun | messages.SignalRun):  # a catch-up's: each as if alone, in bar order
            for item in messages.run_items(body):
                self.apply(item, ts_s)
        elif isinstance(body, messages.Bar):
            r = self.row(body.symbol)
            if r.bar_time is None or body.time >= r.bar_time:
                r.bar_time, r.close = body.time, body.close
        elif isinstance(body, messages.Signal):
            self._signal(body)
        elif isinstance(body, messages.Ack):
            self.row(body.symbol).last_ack = f"{body.status} {body.reason}".strip()
        elif isinstance(body, messages.Fill):
            self.row(body.symbol).real[body.ticket] = (body.direction, body.volume)
        elif isinstance(body, messages.PositionClosed):
            self._closed(body)
        elif isinstance(body, messages.AccountUpdate):
            self.set_account(body.balance, body.equity, body.currency)
        elif isinstance(body, messages.ConnectionState):
            self.connected = body.connected
        elif isinstance(body, messages.PaperTrade):
            self._count_close(("paper", body.id), body.symbol, True, body.pnl)
            self._mark()
        elif isinstance(body, messages.PaperMetrics):
            self.row(body.symbol).paper_balance = body.balance

    def row(self, symbol: str) -> SymbolRow:
        return self.symbols.setdefault(symbol, SymbolRow())

    def _beat(self, hb: messages.Heartbeat, ts_s: float) -> None:
        s = self.services.setdefault(hb.service, ServiceRow())
        if s.epoch is not None and hb.epoch < s.epoch:
            return  # the process before the one heard already (its last beats may come after the new one's first)
        if s.epoch is not None and hb.epoch > s.epoch and s.restarts is not None and hb.pid != s.counted_pid:
            s.restarts += 1  # a new process (epochs grow) the orchestrator's count this view started from lacks
        elif s.restarts is None and self.status_loaded and hb.service != "orchestrator":
            s.restarts = 0  # a service the orchestrator's report did not list yet: its first process
        s.pid, s.epoch, s.uptime_s, s.rss_bytes, s.beat_at = hb.pid, hb.epoch, hb.uptime_s, hb.rss_bytes, ts_s
        s.counted_pid = hb.pid
        if s.state == "?":
            s.state = hb.state

    def _sys_state(self, st: messages.SysState, ts_s: float) -> None:
        if st.state == messages.HALTED and self.system != messages.HALTED:
            self.add_alert(ts_s, "critical", "halted", "orchestrator", f"system HALTED: {st.halted_reason}")
        self.system, self.system_since = st.state, st.since_ts / 1e9 if st.since_ts else None
        self.halted_reason, self.issues = st.halted_reason, list(st.issues)
        for name, state in st.services.items():
            self.services.setdefault(name, ServiceRow()).state = str(state)

    def _signal(self, s: messages.Signal) -> None:
        r = self.row(s.symbol)
        if r.bar_time is not None and s.bar_time < r.bar_time and r.action is not None:
            return  # an older bar's decision (a catch-up after a newer one): the row keeps the latest
        r.bar_time = max(r.bar_time or 0, s.bar_time)
        r.close = s.close if r.bar_time == s.bar_time else r.close
        r.action, r.direction, r.intensity = s.action, s.direction, s.intensity
        r.hmm_state, r.virtual_pnl = s.hmm_state, s.virtual_pnl
        self._bar_point(s.bar_time)

    def _closed(self, c: messages.PositionClosed) -> None:
        self._count_close(("real", str(c.ticket), round(c.time, 3)), c.symbol, False, c.net_profit)
        r = self.row(c.symbol)
        held = r.real.get(c.ticket)
        if c.full or held is None:
            r.real.pop(c.ticket, None)
        else:
            r.real[c.ticket] = (held[0], max(0.0, held[1] - c.volume))
        if c.balance is not None:
            self.balance = c.balance
        self._mark()

    def _count_close(self, key: tuple, symbol: str, is_paper: bool, pnl: float) -> None:
        """A closed trade into its symbol's session PnL; heard before the store's history was read, it is also
        kept to be told apart from the same trade in that history (counted once)."""
        r = self.row(symbol)
        if is_paper:
            r.paper_pnl += pnl
            r.paper_trades += 1
        else:
            r.real_pnl += pnl
            r.real_trades += 1
        if not self.history_loaded and len(self.early) < EARLY_CLOSES:
            self.early.append((key, symbol, is_paper, pnl))

    def set_account(self, balance: float, equity: float, currency: str) -> None:
        self.balance, self.equity, self.currency = balance, equity, currency
        if self.start_balance is None:
            self.start_balance = balance
        self._mark()

    def add_alert(self, ts_s: float, severity: str, kind: str, service: str, message: str) -> None:
        self.alerts.append({"time": ts_s, "severity": str(severity).lower(), "kind": kind, "service": service,
                            "message": message, "halt": kind in HALT_KINDS})
        while len(self.alerts) > self.alert_count:
            self.alerts.popleft()

    # ---- the equity curve ------------------------------------------------------------------------------------
    def real_equity(self) -> float | None:
        if self.equity is not None:
            return self.equity
        if self.start_balance is None:
            return None
        return self.start_balance + sum(r.real_pnl for r in self.symbols.values())

    def paper_equity(self) -> float | None:
        if self.start_balance is None:
            return None
        return self.start_balance + sum(r.paper_pnl + r.virtual_pnl for r in self.symbols.values())

    def _bar_point(self, bar_time: int) -> None:
        last = self.curve[-1] if self.curve else None
        if last is not None and bar_time < last.t:
            return  # an older bar: the curve moves forward only
        if last is None or bar_time > last.t:
            self.curve.append(Point(self.appended, bar_time, None, None))
            self.appended += 1
            while len(self.curve) > self.curve_points:
                self.curve.popleft()
        self._mark()

    def _mark(self) -> None:
        """The latest point takes the figures known now."""
        if not self.curve:
            return
        last = self.curve[-1]
        last.real, last.paper = self.real_equity(), self.paper_equity()
        if self.changed_from is None or last.n < self.changed_from:
            self.changed_from = last.n

    # ---- history read once at start --------------------------------------------------------------------------
    def load_status(self, report: messages.OrchestratorStatus) -> None:
        self.system, self.halted_reason, self.issues = report.system, report.halted_reason, list(report.issues)
        self.system_since = report.since_ts / 1e9 if report.since_ts else None
        self.status_loaded = True
        for name, s in report.services.items():
            row = self.services.setdefault(name, ServiceRow())
            newer = row.epoch is not None and s.epoch and row.epoch > s.epoch  # heard a process the report predates
            # ... unless its count has that process already: supervisord's respawn, seen before the process's hello
            counted = newer and row.pid == s.counted_pid
            row.restarts = s.restarts if s.restarts is None or not newer or counted else s.restarts + 1
            if not newer:
                row.state, row.pid, row.epoch = s.state, s.pid or None, s.epoch or None
                row.uptime_s, row.rss_bytes = s.uptime_s, s.rss_bytes
                row.counted_pid = s.counted_pid or row.pid  # a later process heard is a restart unless it is this one

    def load_positions(self, book: messages.Positions) -> None:
        for p in book.positions:
            self.row(p.symbol).real[p.ticket] = (p.direction, p.volume)
        a = book.account
        if self.equity is None and a is not None:
            self.set_account(a.balance, a.equity, a.currency)

    def load_session(self, session: dict[str, Any]) -> None:
        self.session_id = str(session.get("session_id") or "")
        self.session_start = iso_seconds(session.get("start_time"))
        if session.get("initial_balance") is not None:
            self.start_balance = float(session["initial_balance"])

    def load_history(self, trades: list[dict[str, Any]], signals: list[dict[str, Any]]) -> None:
        """The session's stored trades (real and paper) and signals: each symbol's session PnL (real and paper
        closes, each once: one heard on the stream before is told apart by its id) and latest signal, and the
        curve's points, one per signal's bar time in order, the closes counted from their time on (a paper close is
        dated by its bar; a real one by the broker's clock). A past point's real equity is the start balance plus
        the real closes (the open positions' PnL then is not stored); the broker's equity marks the points from the
        first account update on. The points heard live after the last stored one follow."""
        live = list(self.curve)
        for r in self.symbols.values():
            r.real_pnl = r.paper_pnl = 0.0
            r.real_trades = r.paper_trades = 0
        self.curve.clear()
        self.appended = 0
        closes = sorted((t for t in trades if t.get("action") != "OPEN"), key=lambda t: t["timestamp"])
        stored = set()
        i = 0
        for s in sorted(signals, key=lambda s: s["bar_time"]):
            bar_time = int(iso_seconds(s["bar_time"]) or 0)
            while i < len(closes) and (iso_seconds(closes[i]["timestamp"]) or 0) <= bar_time:
                stored.add(self._stored_close(closes[i]))
                i += 1
            data = s.get("data") or {}
            r = self.row(s["symbol"])
            if r.bar_time is None or bar_time >= r.bar_time:
                r.bar_time, r.close = bar_time, data.get("close", r.close)
                r.action = data.get("action_index", r.action)
                r.direction, r.intensity, r.hmm_state = s["direction"], s.get("intensity") or 0, s.get("hmm_state")
                r.virtual_pnl = float(data.get("virtual_pnl") or 0.0)
            self._bar_point(bar_time)
        for t in closes[i:]:
            stored.add(self._stored_close(t))
        self.history_loaded = True
        for key, symbol, is_paper, pnl in self.early:
            if key not in stored:  # after the store's answer: not in it
                self._count_close(key, symbol, is_paper, pnl)
        self.early = []
        last_t = self.curve[-1].t if self.curve else None
        for p in live:
            if last_t is None or p.t > last_t:
                self.curve.append(Point(self.appended, p.t, p.real, p.paper))
                self.appended += 1
        while len(self.curve) > self.curve_points:
            self.curve.popleft()
        self.resend = True
        self._mark()

    def _stored_close(self, t: dict[str, Any]) -> tuple:
        """A stored close counted; its key (as its message's on the stream)."""
        r = self.row(t["symbol"])
        pnl = float(t.get("pnl") or 0.0)
        if t.get("is_paper"):
            r.paper_pnl += pnl
            r.paper_trades += 1
            return ("paper", str(t["id"]))
        r.real_pnl += pnl
        r.real_trades += 1
        return ("real", str(t.get("position_id")), round(iso_seconds(t["timestamp"]) or 0.0, 3))

    def load_events(self, events: list[dict[str, Any]]) -> None:
        """Stored events, oldest first: the warnings and worse, as alerts."""
        for e in events:
            if str(e.get("severity", "")).upper() in ("WARNING", "ERROR", "CRITICAL"):
                kind = str((e.get("data") or {}).get("kind") or e.get("event_type", "")).lower()
                self.add_alert(iso_seconds(e.get("timestamp")) or 0.0, str(e["severity"]), kind,
                               str(e.get("source") or ""), str(e.get("message") or ""))

    # ---- what browsers get -----------------------------------------------------------------------------------
    def snapshot(self, now_s: float) -> dict[str, Any]:
        out = self._state(now_s)
        out["curve"] = [p.to_json() for p in self.curve]
        out["full"] = True
        return out

    def update(self, now_s: float) -> dict[str, Any]:
        if self.resend:
            self.resend, self.changed_from = False, None
            return self.snapshot(now_s)
        out = self._state(now_s)
        since = self.changed_from
        out["curve"] = [] if since is None else [p.to_json() for p in self.curve if p.n >= since]
        out["full"] = False
        self.changed_from = None
        return out

    def _state(self, now_s: float) -> dict[str, Any]:
        return {
            "now": round(now_s, 3),
            "system": {"state": self.system, "since": self.system_since, "halted_reason": self.halted_reason,
                       "issues": list(self.issues)},
            "account": {"balance": _round(self.balance, 2), "equity": _round(self.equity, 2),
                        "currency": self.currency, "connected": self.connected,
                        "start_balance": _round(self.start_balance, 2)},
            "session": {"id": self.session_id, "start": self.session_start},
            "services": {name: s.to_json(now_s) for name, s in sorted(self.services.items())},
            "symbols": {sym: r.to_json() for sym, r in sorted(self.symbols.items())},
            "alerts": list(self.alerts),
            "curve_points": self.curve_points,
            "history_note": self.history_note,
            "counters": dict(self.counters),
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
