"""The order ledger (pure): what became of each client order id, and what to do when an order is asked.

An order asked is, by the ledger's decision:
- ``Join``: the same order (or a close of the same ticket, an amendment of the same position) is out at the broker
  now: the asker joins it (one order, the same answer);
- ``Replay``: its outcome is in the journal: answered from it, never sent again;
- ``LookUp``: it was sent before without a known outcome (a crash or a timeout in between): the broker's positions,
  then its deals, tell whether it was executed (``found_in_positions``, ``found_in_deals``) before anything is
  resent (``after_look_up``);
- ``Send``: it goes to the broker, its ``sent`` line journaled first (``record``) when there is one to write.

The ledger takes the answers as values (the broker's result, its positions and deals, the wall time) and returns
the journal lines to write (``journal.Entry``); the shell writes them and tells it (``recorded``), and makes them
durable (one fsync per batch) before the order leaves or its answer is given. Which
orders are out is kept by key with the shell's handle of each (``went_out``, ``came_back``); a handle the shell
gave up on (``given_up``) is not joined: its outcome is looked for like any unknown one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from common.messages import OrderResult
from services.connector import journal, orders
from services.connector.port import Deal, Position

H = TypeVar("H")  # the shell's handle of an order out at the broker (its deferred answer)

# an answer that is not final: the order may be sent again under the same id
NOT_FINAL = ("NO_CONFIRMATION", "NOT_CONNECTED", "RATE_LIMITED")
LOOK_BACK_S = 3600.0  # deals are looked for from an hour before the send (the broker's clock may lag)
LOOK_AHEAD_S = 86_400.0  # ... to a day after the later of the broker's time and the wall time


@dataclass(frozen=True)
class Join(Generic[H]):
    handle: H


@dataclass(frozen=True)
class Replay:
    result: OrderResult


@dataclass(frozen=True)
class LookUp:
    entry: journal.Entry
    out_key: str  # where the order goes out if the broker knows nothing of it


@dataclass(frozen=True)
class Send:
    out_key: str  # one order out per key at a time
    record: journal.Entry | None  # the ``sent`` line to journal before sending (None: nothing to write)


@dataclass(frozen=True)
class Recovered:
    result: OrderResult
    record: journal.Entry  # its ``done`` line


def final_refusal(res: OrderResult) -> bool:
    """The broker refused the order itself (not its rate, not for lack of a session, not an unknown outcome)."""
    return res.error_code not in NOT_FINAL


def deals_window(entry: journal.Entry, server_time: float | None, wall_time: float) -> tuple[float, float] | None:
    """The span of deals that holds what an order sent at ``request["server_time"]`` did (None: no send time)."""
    sent_at = entry.request.get("server_time")
    if sent_at is None:
        return None
    return float(sent_at) - LOOK_BACK_S, max(server_time or 0.0, wall_time) + LOOK_AHEAD_S


class OrderLedger(Generic[H]):
    def __init__(self, entries: Mapping[str, journal.Entry], given_up: Callable[[H], bool]) -> None:
        self.entries: dict[str, journal.Entry] = dict(entries)  # (kind, id) -> its latest journal line
        self.out: dict[str, H] = {}  # out key -> the order out at the broker now
        self.peak = 0  # the most orders out at once
        self._given_up = given_up

    # ---- orders asked ------------------------------------------------------------------------------
    def ask_open(self, cid: str, request: dict, now: float) -> Join[H] | Replay | LookUp | Send:
        """A new order `cid` (request: symbol, direction, lots, sl/tp distances, the broker's time)."""
        key = journal.jkey("open", cid)
        return self._ask(key, key, journal.Entry(cid, "open", journal.SENT, now, request))

    def ask_close(self, cid: str, ticket: int, lots: float | None, server_time: float | None,
                  now: float) -> Join[H] | Replay | LookUp | Send:
        """A close of `ticket` (all of it when `lots` is None); one close of a ticket is out at a time, whoever
        asks; without a client order id it is not journaled."""
        record = journal.Entry(cid, "close", journal.SENT, now,
                               {"ticket": ticket, "lots": lots, "server_time": server_time}) if cid else None
        return self._ask(f"close-ticket:{ticket}", journal.jkey("close", cid) if cid else "", record)

    def ask_amend(self, ticket: int) -> Join[H] | Send:
        """New stops for `ticket`: one amendment of a ticket out at a time, never journaled."""
        out_key = f"amend-ticket:{ticket}"
        first = self._live(out_key)
        return Join(first) if first is not None else Send(out_key, None)

    def _ask(self, out_key: str, key: str, record: journal.Entry | None) -> Join[H] | Replay | LookUp | Send:
        first = self._live(out_key)
        if first is not None:
            return Join(first)
        entry = self.entries.get(key) if key else None
        if entry is None:
            return Send(out_key, record)
        if entry.status == journal.DONE:
            return Replay(OrderResult(**entry.result))
        return LookUp(entry, out_key)

    def _live(self, out_key: str) -> H | None:
        first = self.out.get(out_key)
        if first is not None and self._given_up(first):
            del self.out[out_key]
            return None
        return first

    # ---- an order sent before without a known outcome ------------------------------------------------
    @staticmethod
    def can_look_up(entry: journal.Entry) -> bool:
        """Whether the broker's state can tell the outcome: not for a partial close (nor a close without its
        ticket or send time)."""
        if entry.kind == "open":
            return True
        req = entry.request
        return req.get("lots") is None and req.get("ticket") is not None and req.get("server_time") is not None

    @staticmethod
    def found_in_positions(entry: journal.Entry, positions: Iterable[Position]) -> tuple[OrderResult | None, bool]:
        """What the open positions say: an opening's position labelled with its id (the result), and whether the
        deals may still tell (not for a close whose position is still open: it was not executed)."""
        if entry.kind == "open":
            found = orders.existing_order(entry.cid, {}, positions)
            return found, found is None
        return None, all(p.ticket != int(entry.request["ticket"]) for p in positions)

    def found_in_deals(self, entry: journal.Entry, deals: Iterable[Deal]) -> OrderResult | None:
        """What the deals since the send say: an opening deal no other order claims, or the position's last
        closing deal."""
        if entry.kind == "open":
            claimed = journal.claimed_tickets(self.entries)
            d = journal.match_opening_deal(entry, deals, claimed, entry.request["symbol"])
            if d is None:
                return None
            return OrderResult(True, entry.cid, ticket=d.position_id, price=d.price, volume=d.volume, recovered=True)
        ticket = int(entry.request["ticket"])
        closing = [d for d in deals if d.closing and d.position_id == ticket]
        if not closing:
            return None
        return OrderResult(True, entry.cid, ticket=ticket, price=closing[-1].price, volume=closing[-1].volume,
                           recovered=True)

    @staticmethod
    def after_look_up(look: LookUp, found: OrderResult | None, now: float) -> Recovered | Send:
        """Found at the broker: the result, journaled done; else sent again (its ``sent`` line is there)."""
        if found is None:
            return Send(look.out_key, None)
        return Recovered(found, dataclasses.replace(look.entry, status=journal.DONE, ts=now,
                                                    result=dataclasses.asdict(found)))

    # ---- out at the broker, answered ----------------------------------------------------------------------
    def went_out(self, out_key: str, handle: H) -> None:
        self.out[out_key] = handle
        self.peak = max(self.peak, len(self.out))

    def came_back(self, out_key: str, handle: H) -> None:
        if self.out.get(out_key) is handle:
            del self.out[out_key]

    def settled_open(self, cid: str, res: OrderResult, now: float) -> journal.Entry | None:
        """The broker's answer to an opening: its ``done`` line when final for the id (a fill, or the broker's
        definite no); an unknown outcome, or a request that never reached the broker (not connected, refused for
        its rate), stays open: the same id may be sent again."""
        if not (res.success or final_refusal(res)):
            return None
        sent = self.entries[journal.jkey("open", cid)]
        return dataclasses.replace(sent, status=journal.DONE, ts=now, result=dataclasses.asdict(res))

    @staticmethod
    def settled_close(cid: str, ticket: int, lots: float | None, res: OrderResult,
                      now: float) -> tuple[OrderResult, journal.Entry | None]:
        """The broker's answer to a close, under the asker's id; its ``done`` line when it closed."""
        res = dataclasses.replace(res, client_order_id=cid or res.client_order_id)
        if not (cid and res.success):
            return res, None
        return res, journal.Entry(cid, "close", journal.DONE, now, {"ticket": ticket, "lots": lots},
                                  dataclasses.asdict(res))

    def closes_asked(self) -> set[int]:
        """The tickets this connector asked to close, this process or one before it (a close line in the journal,
        sent or done): a close of one found after a restart was this client's, as its live event said."""
        return {int(e.request["ticket"]) for e in self.entries.values()
                if e.kind == "close" and isinstance(e.request, dict) and isinstance(e.request.get("ticket"), int)}

    def recorded(self, entry: journal.Entry) -> None:
        """A journal line is written (durably): it is the id's latest."""
        self.entries[journal.jkey(entry.kind, entry.cid)] = entry

    def __len__(self) -> int:
        return len(self.entries)

