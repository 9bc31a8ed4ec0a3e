"""``oracle top``: a live view of the system, folded from the published streams and the orchestrator's status.

``TopView`` is pure: ``apply`` folds one decoded message in, ``set_status`` takes the orchestrator's report,
``set_book`` the connector's positions and account (the real positions are the broker's book, not the fills seen
since the view started), ``set_session`` the running session's stored row (its trades and PnL so far),
``set_history`` the stored warning and critical events (so a view started late shows what happened before it),
``set_down`` why the system is not running; ``render`` builds the rich tables. The CLI shell owns the sockets and
the refresh loop.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from common import messages


@dataclass
class SymbolRow:
    last_bar_time: int | None = None
    last_close: float | None = None
    action: int | None = None
    direction: int = 0  # the preditor's virtual position (its desired state)
    intensity: int = 0
    hmm_state: int | None = None
    virtual_pnl: float | None = None
    real_direction: int = 0  # the broker's book (the connector's positions), then the fills and closes seen
    real_volume: float = 0.0  # lots open at the broker
    real_floating: float | None = None  # the open positions' net PnL at the broker
    real_pnl: float = 0.0  # realized net PnL of the closes seen
    last_ack: str = ""
    paper_pnl: float | None = None


@dataclass
class TopView:
    status: messages.OrchestratorStatus | None = None
    status_error: str = ""
    symbols: dict[str, SymbolRow] = field(default_factory=dict)
    alerts: deque = field(default_factory=lambda: deque(maxlen=8))
    account: dict = field(default_factory=dict)
    connected: bool | None = None
    down: str = ""  # why the system is not running ("" while it is)
    session: dict = field(default_factory=dict)
    history: list[str] = field(default_factory=list)  # the stored alerts and halts from before the view started

    def set_down(self, reason: str) -> None:
        self.down = reason

    def set_book(self, book: messages.Positions) -> None:
        """The connector's positions: the real position of every symbol (net direction, lots, floating PnL)."""
        for r in self.symbols.values():
            r.real_direction, r.real_volume, r.real_floating = 0, 0.0, None
        for p in book.positions:
            r = self.row(p.symbol)
            signed = r.real_direction * r.real_volume + p.direction * p.volume
            r.real_direction = (signed > 0) - (signed < 0)
            r.real_volume = round(abs(signed), 8)
            r.real_floating = (r.real_floating or 0.0) + p.pnl
        a = book.account
        self.account = {"balance": a.balance, "equity": a.equity, "currency": a.currency}

    def set_session(self, row: dict | None) -> None:
        self.session = dict(row or {})

    def set_history(self, events: list[dict]) -> None:
        """Stored events (newest first): the warnings and critical ones, as alert lines (oldest first)."""
        lines = []
        for e in reversed(events):
            if str(e.get("severity", "")).upper() in ("WARNING", "ERROR", "CRITICAL"):
                lines.append(f"{str(e.get('timestamp', ''))[:19]} {str(e.get('severity', '')).lower()} "
                             f"{e.get('event_type', '')} ({e.get('source', '')}): {e.get('message', '')}")
        self.history = lines[-8:]

    def row(self, symbol: str) -> SymbolRow:
        return self.symbols.setdefault(symbol, SymbolRow())

    def set_status(self, report: messages.OrchestratorStatus | None, error: str = "") -> None:
        if report is not None:
            self.status = report
        self.status_error = error

    def apply(self, body: Any, ts_ns: int) -> None:
        if isinstance(body, messages.BarRun | messages.SignalRun):  # a catch-up's: each as if alone, in bar order
            for item in messages.run_items(body):
                self.apply(item, ts_ns)
        elif isinstance(body, messages.Bar):
            r = self.row(body.symbol)
            r.last_bar_time, r.last_close = body.time, body.close
        elif isinstance(body, messages.Signal):
            r = self.row(body.symbol)
            r.action, r.direction, r.intensity = body.action, body.direction, body.intensity
            r.hmm_state, r.virtual_pnl = body.hmm_state, body.virtual_pnl
            if body.bar_time >= (r.last_bar_time or 0):  # the bar's close, when no bar was heard (a late top)
                r.last_bar_time, r.last_close = body.bar_time, body.close
        elif isinstance(body, messages.Ack):
            self.row(body.symbol).last_ack = f"{body.status} {body.reason}".strip()
        elif isinstance(body, messages.Fill):
            self.row(body.symbol).real_direction = body.direction
        elif isinstance(body, messages.PositionClosed):
            r = self.row(body.symbol)
            r.real_pnl += body.net_profit
            if body.full:
                r.real_direction = 0
        elif isinstance(body, messages.PaperMetrics):
            self.row(body.symbol).paper_pnl = body.pnl
        elif isinstance(body, messages.AccountUpdate):
            self.account = {"balance": body.balance, "equity": body.equity, "currency": body.currency}
        elif isinstance(body, messages.ConnectionState):
            self.connected = body.connected
        elif isinstance(body, messages.Alert):
            clock = time.strftime("%H:%M:%S", time.localtime(ts_ns / 1e9))
            self.alerts.append(f"{clock} {body.severity} {body.kind}: {body.message}")

    def render(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        if self.down:
            return Group(Text(f"system down: {self.down}"))
        st = self.status
        head = f"system [bold]{st.system if st else '?'}[/bold]"
        if st and st.halted_reason:
            head += f"  HALTED: {st.halted_reason}"
        if st and st.failed_reason:  # programs that cannot start until a person acts (common/failure.py)
            head += f"  FAILED: {st.failed_reason}"
        if self.status_error:
            head += f"  ({self.status_error})"
        if self.account:
            a = self.account
            head += f"  balance {a['balance']:.2f} equity {a['equity']:.2f} {a['currency']}"
        if self.connected is not None:
            head += "  broker " + ("connected" if self.connected else "[red]DISCONNECTED[/red]")
        session = ""
        if self.session:
            ss = self.session
            floating = sum(r.real_floating or 0.0 for r in self.symbols.values())
            session = (f"session {ss.get('session_id', '?')} {ss.get('status', '')}: {ss.get('total_trades', 0)} "
                       f"trades closed, realized PnL {float(ss.get('total_pnl') or 0.0):.2f}, "
                       f"floating {floating:.2f}")

        services = Table("service", "state", "pid", "hb age", "RSS MB", "restarts", title="services")
        for name, s in (st.services if st else {}).items():
            services.add_row(
                name,
                s.state,
                str(s.pid),
                "-" if s.hb_age_s is None else f"{s.hb_age_s:.1f}s",
                "-" if s.rss_bytes is None else f"{s.rss_bytes / 2**20:.0f}",
                "-" if s.restarts is None else str(s.restarts),
            )

        symbols = Table(
            "symbol", "last bar (UTC)", "close", "signal", "HMM", "virtual", "virtual PnL", "real", "lots", "real PnL",
            "paper PnL", "last ack", title="symbols",
        )
        for sym, r in sorted(self.symbols.items()):
            bar = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.last_bar_time)) if r.last_bar_time else "-"
            symbols.add_row(
                sym,
                bar,
                "-" if r.last_close is None else f"{r.last_close:g}",
                "-" if r.action is None else str(r.action),
                "-" if r.hmm_state is None else str(r.hmm_state),
                _position(r.direction, r.intensity),
                "-" if r.virtual_pnl is None else f"{r.virtual_pnl:.2f}",
                _position(r.real_direction, 0),
                f"{r.real_volume:g}" if r.real_volume else "-",
                f"{r.real_pnl + (r.real_floating or 0.0):.2f}",
                "-" if r.paper_pnl is None else f"{r.paper_pnl:.2f}",
                r.last_ack or "-",
            )
        issues = st.issues if st else []
        persistence = st.services.get("persistence") if st else None
        lines = [head, *([session] if session else []), services, symbols]
        backlog = persistence.info.get("backlog") if persistence else None
        if backlog is not None:
            lines.append(f"persistence backlog: {backlog}")
        lines += [Text(f"issue: {i}") for i in issues]
        lines += [Text(f"model refused: {r}") for r in (st.refused_models if st else [])]
        # the orchestrator's (every service's warnings and critical ones, kept across its restarts), else the store's
        # and the stream's
        shown = (list(st.alerts) if st and (st.alerts or not self.history) else [*self.history, *self.alerts])[-12:]
        lines += ["alerts:", *(Text(f"  {a}") for a in shown or ["none"])]
        return Group(*lines)


def _position(direction: int, intensity: int) -> str:
    if direction == 0:
        return "FLAT"
    side = "LONG" if direction > 0 else "SHORT"
    return f"{side}{intensity}" if intensity else side
