"""What the notifier tells a person, decided from values: which published messages are notices (and their stable
ids), how a burst of notices folds into one message, when the next message may be formed, and how long a failed
send waits. Pure: no clock, no sockets, no files (the shell, service.py, passes the time in).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from common import messages
from common.records import events as ev

# ids derived from what a notice is about (uuid5): the same alert, close or summary heard twice is one notice, and
# the ids of alerts and closes are the store's own ids of the same facts (persistence's event of an alert heard on
# the stream, the connector's trade record of a close), so one heard live and read back from the store is one
NAMESPACE = uuid.UUID("1d4f3e0a-6b7c-4c52-9a1e-0f2b8d9c7a65")
TEXT_CHARS = 4000  # a message's text at most (Telegram's limit is 4096)
LINE_CHARS = 300  # one notice's line at most in a message's text (the payload keeps it whole)
SEVERITIES = ("info", "warning", "critical")
# alert kinds that say what an external close's own notice says (the executor's view of the same close): not sent
# twice when external closes are notified
SAID_BY_CLOSES = frozenset({"external_close"})


@dataclass(frozen=True, slots=True)
class Notice:
    """One thing a person should hear about. ``id`` is stable: derived from what it is about (the alert's
    publisher, topic, epoch and seq; the closing deal; the summary's event id)."""

    id: str
    kind: str  # alert.<kind> | external_close | session_summary
    severity: str  # info | warning | critical
    text: str
    time: float  # Unix s: when it happened (the publisher's send time, the close's time, the summary's)
    data: dict = field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "severity": self.severity, "text": self.text, "time": self.time,
                "data": self.data}


@dataclass(frozen=True, slots=True)
class Choice:
    """What is sent: the alerts of these severities, external closes, session summaries."""

    severities: frozenset[str] = frozenset({"warning", "critical"})
    external_closes: bool = True
    session_summary: bool = True


def derived_id(*parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join(str(p) for p in parts)))


def from_published(env: Any, choice: Choice) -> Notice | None:
    """The notice a published message makes (an ``Envelope`` of common/wire.py: src, topic, epoch, seq, ts, body),
    or None when it is none."""
    body = env.body
    if isinstance(body, messages.Alert):
        if body.severity not in choice.severities or (body.kind in SAID_BY_CLOSES and choice.external_closes):
            return None
        who = body.service or env.src
        return alert(alert_id(env.src, env.topic, env.epoch, env.seq), body.kind, body.severity, who, body.message,
                     env.ts / 1e9, dict(body.details))
    if isinstance(body, messages.PositionClosed):
        if not (body.external and choice.external_closes):
            return None
        return external_close(body)
    return None


def alert_id(src: str, topic: str, epoch: int, seq: int) -> str:
    """The id persistence gives the event of this published alert (services/persistence/stream_events.msg_id)."""
    return str(ev.derived_id(f"{src}:{topic}:{epoch}:{seq}", "alert"))


def close_id(ticket: int, time: float, volume: float) -> str:
    """The id of the connector's trade record of this closing deal (common/records: real_trades, trades)."""
    return str(ev.derived_id("real", f"close:{ticket}:{float(time):.3f}:{float(volume):g}"))


def alert(notice_id: str, kind: str, severity: str, service: str, message: str, time: float,
          details: dict) -> Notice:
    return Notice(notice_id, f"alert.{kind}", severity, f"{severity.upper()} {kind} ({service}): {message}", time,
                  {"service": service, "details": details})


def external_close(c: messages.PositionClosed) -> Notice:
    return close_notice(close_id(c.ticket, c.time, c.volume), c.symbol, c.ticket, c.direction, c.volume,
                        c.entry_price, c.close_price, c.reason, c.net_profit, c.time, c.full)


def close_notice(notice_id: str, symbol: str, ticket: int, direction: int, volume: float, entry: float | None,
                 exit_: float | None, reason: str, net: float, time: float, full: bool) -> Notice:
    side = "BUY" if direction > 0 else "SELL"
    part = "" if full else " (part)"
    prices = f" {entry:g} -> {exit_:g}" if entry is not None and exit_ is not None else ""
    text = (f"WARNING external close{part} {symbol} #{ticket}: {side} {volume:g} lots{prices} ({reason}), "
            f"net {net:+.2f}")
    return Notice(notice_id, "external_close", "warning", text, time,
                  {"symbol": symbol, "ticket": ticket, "reason": reason, "net_profit": net, "volume": volume,
                   "full": full})


# ---- read back from the store (what was published while the notifier was not listening) ----------------------

STORE_SEVERITY = {"DEBUG": "info", "INFO": "info", "WARNING": "warning", "ERROR": "critical", "CRITICAL": "critical"}


def from_alert_event(event: dict, choice: Choice) -> Notice | None:
    """An ``ALERT`` event of the store (persistence's record of an alert heard on the stream), as the notice of the
    alert itself (the same id and text), or None when its severity is not chosen."""
    severity = STORE_SEVERITY.get(str(event.get("severity", "")).upper(), "warning")
    data = event.get("data") or {}
    if severity not in choice.severities or (data.get("kind") in SAID_BY_CLOSES and choice.external_closes):
        return None
    details = data.get("details") if isinstance(data.get("details"), dict) else {}
    return alert(str(event["id"]), str(data.get("kind") or "alert"), severity, str(event.get("source") or "?"),
                 str(event.get("message") or ""), _unix(event.get("timestamp")), details)


def from_trade(trade: dict, choice: Choice) -> Notice | None:
    """A real closing trade of the store that was external (the connector's record of ``closed.<SYM>`` says so in
    its comment), or None."""
    if not choice.external_closes or trade.get("is_paper") or trade.get("action") not in ("CLOSE", "PARTIAL_CLOSE"):
        return None
    comment = str(trade.get("comment") or "")
    if "external" not in comment.split():
        return None
    ticket = int(trade.get("position_id") or 0)
    return close_notice(str(trade["id"]), str(trade.get("symbol")), ticket, int(trade.get("direction") or 0),
                        float(trade.get("volume") or 0.0), trade.get("entry_price"), trade.get("exit_price"),
                        comment.split()[0], float(trade.get("pnl") or 0.0), _unix(trade.get("timestamp")),
                        trade.get("action") == "CLOSE")


def session_summary(event: dict) -> Notice:
    """The notice of a session's end from the store (a row of the ``events`` table, as the query op gives it): its
    SESSION_SUMMARY (at `oracle ctl stop`: real and paper totals) or its SESSION_ENDED (every end, a day change
    too: the real totals). One notice per session (its id derives from the session), whichever is read first."""
    data = event.get("data") or {}
    session = event.get("session_id") or "?"
    balance = data.get("final_balance")
    bal = f"{balance:.2f}" if isinstance(balance, int | float) else "unknown"
    if "real" in data:
        real, paper = data.get("real") or {}, data.get("paper") or {}
        totals = (f"real {real.get('trades', 0)} trades, PnL {float(real.get('pnl') or 0):+.2f}; paper "
                  f"{paper.get('trades', 0)} trades, PnL {float(paper.get('pnl') or 0):+.2f}")
    else:
        totals = f"real {data.get('total_trades', 0)} trades, PnL {float(data.get('total_pnl') or 0):+.2f}"
    text = f"INFO session {session} ended {data.get('reason', '?')}: {totals}; balance {bal}"
    return Notice(derived_id("session-end", session), "session_summary", "info", text, _unix(event.get("timestamp")),
                  {"session_id": event.get("session_id"), "event": event.get("event_type"), **data})


def _unix(value: Any) -> float:
    from datetime import datetime

    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    if isinstance(value, datetime):
        return value.timestamp()
    return 0.0


# ---- folding a burst into one message ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """What one POST carries: its notices, in arrival order, and their text. ``id`` derives from the notices'."""

    id: str
    text: str
    notices: tuple[Notice, ...]

    def payload(self) -> dict[str, Any]:
        return {"id": self.id, "source": "oracle-trader", "text": self.text, "count": len(self.notices),
                "notices": [n.wire() for n in self.notices]}


def fold(notices: Sequence[Notice], max_lines: int) -> Message:
    """One message of ``notices`` (not empty): one line per kind and severity (first-seen order; a kind heard
    several times is counted, its last text shown), at most ``max_lines`` lines, the kinds beyond counted on the
    last line. Every notice stays in the payload."""
    if not notices:
        raise ValueError("fold: no notices")
    groups: dict[tuple[str, str], list[Notice]] = {}
    for n in notices:
        groups.setdefault((n.kind, n.severity), []).append(n)
    lines = []
    for (kind, severity), group in groups.items():
        last = group[-1].text
        lines.append(_clip(last if len(group) == 1 else f"{len(group)}x {kind} ({severity}), the last: {last}"))
    if len(lines) > max_lines:
        rest = list(groups.values())[max_lines - 1:]
        lines = lines[:max_lines - 1] + [f"... and {sum(len(g) for g in rest)} more of {len(rest)} other kinds"]
    head = [] if len(notices) == 1 else [f"Oracle Trader: {len(notices)} notifications"]
    text = "\n".join(head + lines)
    if len(text) > TEXT_CHARS:
        text = text[:TEXT_CHARS - 1] + "…"
    return Message(derived_id("message", *(n.id for n in notices)), text, tuple(notices))


def _clip(line: str) -> str:
    return line if len(line) <= LINE_CHARS else line[:LINE_CHARS - 1] + "…"


# ---- when ----------------------------------------------------------------------------------------------------


def may_form(now: float, last_formed: float | None, interval_s: float) -> bool:
    """A new message may be formed: none was in the last ``interval_s`` (the rate limit)."""
    return last_formed is None or now - last_formed >= interval_s or now < last_formed  # a clock set back: allow


def retry_delay(failures: int, initial_s: float, max_s: float) -> float:
    """How long after its ``failures``-th failed send (1, 2, ...) a message is tried again: initial, x2 each time,
    at most ``max_s``."""
    if failures < 1:
        return 0.0
    return min(max_s, initial_s * 2 ** min(failures - 1, 60))


def severities(values: Iterable[str]) -> frozenset[str]:
    out = frozenset(values)
    unknown = out - set(SEVERITIES)
    if unknown:
        raise ValueError(f"unknown severities: {', '.join(sorted(unknown))}")
    return out
