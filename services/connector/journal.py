"""The order journal: client_order_id -> what happened to that order, across restarts (pure part).

The journal is an append-only file of JSON lines (the service appends them, one fsync per batch of orders:
`durable.AppendLog`): a ``sent`` line durable before a request goes to the broker, a ``done`` line with the result
once the outcome is known (durable before it is answered). Replaying the lines gives each id's latest entry. A
request with an id already ``done`` is answered from the journal, never sent again; an id ``sent`` without an
outcome (a crash or a timeout in between) is resolved from the broker (an open position labelled with the id, or an
opening deal after the send that no other entry claims) before anything is resent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SENT, DONE = "sent", "done"


@dataclass(frozen=True)
class Entry:
    cid: str
    kind: str  # open | close
    status: str  # sent | done
    ts: float  # wall time of the line, Unix s
    request: dict = field(default_factory=dict)
    result: dict = field(default_factory=dict)  # messages.OrderResult fields once done


def line(entry: Entry) -> str:
    return (
        json.dumps(
            {
                "cid": entry.cid,
                "kind": entry.kind,
                "status": entry.status,
                "ts": entry.ts,
                "request": entry.request,
                "result": entry.result,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        + "\n"
    )


def replay(lines: Iterable[str]) -> tuple[dict[str, Entry], int]:
    """The latest entry per (kind, id); returns also how many lines were unreadable (a torn last write)."""
    out: dict[str, Entry] = {}
    bad = 0
    for raw in lines:
        raw = raw.strip()
        if not raw:
            continue
        try:
            d = json.loads(raw)
            e = Entry(
                str(d["cid"]),
                str(d["kind"]),
                str(d["status"]),
                float(d["ts"]),
                d.get("request") or {},
                d.get("result") or {},
            )
        except (ValueError, KeyError, TypeError):
            bad += 1
            continue
        k = jkey(e.kind, e.cid)
        if out.get(k, e).status == DONE and e.status != DONE:
            continue  # an outcome is final
        out[k] = e
    return out, bad


def jkey(kind: str, cid: str) -> str:
    return f"{kind}:{cid}"


def claimed_tickets(entries: Mapping[str, Entry]) -> set[int]:
    return {int(e.result["ticket"]) for e in entries.values() if e.status == DONE and e.result.get("ticket")}


def match_opening_deal(entry: Entry, deals: Iterable[Any], claimed: set[int], spec_symbol: str) -> Any | None:
    """An opening deal that this unresolved ``sent`` entry produced: same symbol, side and volume, executed after
    the send (the broker's clock at the send, ``request["server_time"]``, with 60 s of tolerance), and not the
    ticket of another journalled order."""
    req = entry.request
    for d in deals:
        if d.closing or d.symbol != spec_symbol or d.position_id in claimed:
            continue
        if d.direction != (1 if req.get("direction", 0) > 0 else -1):
            continue
        if abs(d.volume - float(req.get("lots", 0))) > 1e-9:
            continue
        sent_at = req.get("server_time")
        if sent_at is not None and d.time + 60 < float(sent_at):
            continue
        return d
    return None
