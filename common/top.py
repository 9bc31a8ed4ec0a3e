"""``oracle top``: a live view of the system, folded from the published streams and the orchestrator's status.

``TopView`` is pure: ``apply`` folds one decoded message in, ``set_status`` takes the orchestrator's report,
``render`` builds the rich tables. The CLI shell owns the sockets and the refresh loop.
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
    real_direction: int = 0  # from fills and closes seen since the view started
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

    def row(self, symbol: str) -> SymbolRow:
        return self.symbols.setdefault(symbol, SymbolRow())

    def set_status(self, report: messages.OrchestratorStatus | None, error: str = "") -> None:
        if report is not None:
            self.status = report
        self.status_error = error

    def apply(self, body: Any, ts_ns: int) -> None:
        if isinstance(body, messages.Bar):
            r = self.row(body.symbol)
            r.last_bar_time, r.last_close = body.time, body.close
        elif isinstance(body, messages.Signal):
            r = self.row(body.symbol)
            r.action, r.direction, r.intensity = body.action, body.direction, body.intensity
            r.hmm_state, r.virtual_pnl = body.hmm_state, body.virtual_pnl
            r.last_bar_time = max(r.last_bar_time or 0, body.bar_time)
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
            "symbol", "last bar (UTC)", "close", "signal", "HMM", "virtual", "virtual PnL", "real", "real PnL",
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
                f"{r.real_pnl:.2f}",
                "-" if r.paper_pnl is None else f"{r.paper_pnl:.2f}",
                r.last_ack or "-",
            )
        issues = st.issues if st else []
        persistence = st.services.get("persistence") if st else None
        lines = [head, services, symbols]
        backlog = persistence.info.get("backlog") if persistence else None
        if backlog is not None:
            lines.append(f"persistence backlog: {backlog}")
        lines += [f"issue: {i}" for i in issues]
        lines += ["alerts:", *(self.alerts or ["  none"])]
        return Group(*lines)


def _position(direction: int, intensity: int) -> str:
    if direction == 0:
        return "FLAT"
    side = "LONG" if direction > 0 else "SHORT"
    return f"{side}{intensity}" if intensity else side
