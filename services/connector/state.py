"""What the connector has published, and what that means after a restart (pure).

The state is a small JSON document kept under data_dir as a snapshot and a journal of the sections changed since
(`durable.JournaledState` of `to_dict`, committed when `dirty`, its `changed` sections alone encoded again; the
snapshot's format is the whole state file of old and `journal_seq`, and a state file of old is read as it is):
- the open time of the last bar published per (symbol, timeframe), and the subscriptions. It is written *before*
  a bar is published, so a crash can lose a bar (a subscriber sees the gap in bar times and repairs it through the
  history op) but never publish one twice. On connect, every subscription is renewed with ``since`` = that time:
  the bars closed while the connector was down are published first, in order;
- the positions known open (ticket -> symbol, direction, open time, label), so that positions closed while the
  connector process was down (a stop hit, a manual close) are still reported on ``closed.<SYM>`` from the
  broker's deal list after a restart (``closed_while_away``), and positions open now whose opening was never
  recorded get it from the same list (``opening_fills``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from common.messages import Fill, Position
from services.connector.port import Deal, PositionClosed, position_closed


def key(symbol: str, timeframe: str) -> str:
    return f"{symbol}.{timeframe}"


@dataclass
class ConnectorState:
    last: dict[str, int] = field(default_factory=dict)  # "SYM.TF" -> open time of the last published bar
    subscriptions: dict[str, list[str]] = field(default_factory=dict)  # symbol -> timeframes, in order
    # ticket (as text, JSON keys) -> {"symbol", "direction", "open_time", "label", "comment", "recorded"}
    # ("recorded": False while its opening's trade record is not in the outbox yet; absent: recorded)
    positions: dict[str, dict] = field(default_factory=dict)
    # the sections changed since the last commit (`committed`): only those are encoded again (durable.JournaledState)
    changed: set[str] = field(default_factory=set, compare=False, repr=False)

    @property
    def dirty(self) -> bool:
        """Changed since the last commit."""
        return bool(self.changed)

    def subscribe(self, symbol: str, timeframe: str) -> bool:
        """Remember a subscription; False when it was known already (nothing to save)."""
        tfs = self.subscriptions.setdefault(symbol, [])
        if timeframe in tfs:
            return False
        tfs.append(timeframe)
        self.changed.add("subscriptions")
        return True

    def should_publish(self, symbol: str, timeframe: str, time: int) -> bool:
        """A bar goes out once: only when it is newer than the last one published for its key."""
        last = self.last.get(key(symbol, timeframe))
        return last is None or time > last

    def record(self, symbol: str, timeframe: str, time: int) -> None:
        k = key(symbol, timeframe)
        self.last[k] = max(time, self.last.get(k, time))
        self.changed.add("last")

    def since(self, symbol: str, timeframe: str, requested: int | None = None) -> int | None:
        """Where the bar stream of a (re)subscription resumes: after what was published, never before it."""
        last = self.last.get(key(symbol, timeframe))
        if last is None:
            return requested
        return last if requested is None else max(last, requested)

    def opened(self, ticket: int, symbol: str, direction: int, open_time: float, label: str,
               comment: str = "", recorded: bool = False) -> bool:
        """Remember an open position (its order comment too, for a close seen only after a restart) and whether its
        opening's trade record is in the outbox yet; False when nothing changed (nothing to save)."""
        known = self.positions.get(str(ticket))
        if known is not None:
            if recorded and not known.get("recorded", True):
                known["recorded"] = True
                self.changed.add("positions")
                return True
            return False
        self.positions[str(ticket)] = {"symbol": symbol, "direction": direction, "open_time": open_time, "label": label,
                                       "comment": comment, "recorded": recorded}
        self.changed.add("positions")
        return True

    def unrecorded(self, tickets: Iterable[int]) -> set[int]:
        """Of `tickets` (open at the broker), those whose opening's trade record was never handed over: unknown here,
        or known from the order's answer only (the process died before the fill event was recorded)."""
        return {t for t in tickets if str(t) not in self.positions or not self.positions[str(t)].get("recorded", True)}

    def closed(self, ticket: int) -> bool:
        if self.positions.pop(str(ticket), None) is None:
            return False
        self.changed.add("positions")
        return True

    def committed(self) -> None:
        """What changed is durable (`to_dict` committed)."""
        self.changed.clear()

    def to_dict(self) -> dict:
        return {"v": 1, "last": self.last, "subscriptions": self.subscriptions, "positions": self.positions}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ConnectorState:
        """Parse the state file; raises ValueError when it is not one (the caller decides what to do)."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: object) -> ConnectorState:
        """The decoded state file; raises ValueError when it is not one."""
        if not isinstance(raw, dict) or raw.get("v") != 1:
            raise ValueError("not a connector state document (v 1)")
        last, subs, pos = raw.get("last", {}), raw.get("subscriptions", {}), raw.get("positions", {})
        if not all(isinstance(x, dict) for x in (last, subs, pos)):
            raise ValueError("bad connector state document")
        return cls(
            {str(k): int(v) for k, v in last.items()},
            {str(k): [str(v)] if isinstance(v, str) else [str(x) for x in v] for k, v in subs.items()},
            {str(k): dict(v) for k, v in pos.items() if isinstance(v, dict)},
        )


def closed_while_away(
    known: dict[str, dict], open_now: Iterable[int], deals: Iterable[Deal], asked: Collection[int] = ()
) -> tuple[list[PositionClosed], list[int]]:
    """Positions known open before a restart and gone now: their closes from the broker's closing deals.

    Returns the closes to publish (in deal time order) and the tickets gone without a closing deal in the list.
    A ticket this connector ``asked`` to close (its order journal) is reported as the live event did ("CLIENT"),
    so a close recorded before a kill the state did not see is the same record again (one at the store). For the
    others nothing tells whether a close while away was a stop or a manual close: reported external ("EXTERNAL").
    """
    open_set = set(open_now)
    gone = {int(t): p for t, p in known.items() if int(t) not in open_set}
    out: list[PositionClosed] = []
    found: set[int] = set()
    for d in sorted(deals, key=lambda d: (d.time, d.deal_id)):
        p = gone.get(d.position_id)
        if p is None or not d.closing:
            continue
        found.add(d.position_id)
        out.append(position_closed(d, int(p["direction"]), d.position_id not in asked, False, True,
                                   str(p.get("label", "")), str(p.get("comment", ""))))
    return out, sorted(set(gone) - found)


def opening_fills(position: Position, deals: Iterable[Deal]) -> list[Fill]:
    """The fills that opened `position` (open at the broker, its opening never recorded here), from the broker's
    deal list, in deal order: the very fills its fill events carried (same deal ids, so a record of one handed over
    before a kill is a duplicate at the store, not a second trade). Empty when the list holds none of them."""
    return [Fill(position.symbol, position.ticket, position.label, d.direction, d.volume, d.price, d.time, d.deal_id,
                 position.comment, d.commission)
            for d in sorted(deals, key=lambda d: (d.time, d.deal_id))
            if d.position_id == position.ticket and not d.closing]


def merged_subscriptions(configured: dict[str, str | list[str]],
                         previous: dict[str, list[str]]) -> dict[str, list[str]]:
    """The timeframes to publish per symbol: those subscribed before a restart (the subscribe op's too), then
    the configured ones (a symbol may have several)."""
    out = {s: list(tfs) for s, tfs in previous.items()}
    for symbol, tfs in configured.items():
        have = out.setdefault(symbol, [])
        have += [tf for tf in ([tfs] if isinstance(tfs, str) else tfs) if tf not in have]
    return out


def compact_bar(time: int, open_: float, high: float, low: float, close: float, volume: float) -> list:
    """A bar on the wire of the history op: [time, open, high, low, close, volume]."""
    return [int(time), open_, high, low, close, volume]
