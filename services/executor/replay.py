"""Orders an earlier process decided and died carrying out (pure): its intents read back as decided signals.

The state file keeps the orders of every flight out (flights.py) until it lands. After a restart they are carried
out again, before any newer signal: the same orders (same client order ids: the connector answers an id it has
seen with its first result), acked as the first process would have acked them, never decided again. Intents a
version-1 executor wrote (protocol volumes) are converted first with their symbols' contract sizes (state_v1.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from common import messages
from services.executor import state_v1
from services.executor.acks import Ack
from services.executor.batch import Decided
from services.executor.commands import CloseOrder, RealPosition
from services.executor.plan import OpenOrder
from services.executor.sync import Direction


@dataclass(frozen=True)
class NotCarriedOut:
    """An intent that cannot be read or become lots: not sent, its orders named for a person to check."""

    error: str
    client_order_ids: list


@dataclass(frozen=True)
class Replay:
    """The intents as a batch (without symbol data: the shell asks it for each opening), the positions their
    closes name that the account's list does not hold (they were there when the intents were written), and the
    intents that cannot be read (not sent: named for a person to check at the broker)."""

    batch: list[Decided]
    positions: list[RealPosition]
    unreadable: list[NotCarriedOut] = field(default_factory=list)

    def opening_symbols(self) -> list[str]:
        return [o.sig.symbol for o in self.batch if o.open is not None]


def replay(intents: Sequence[Mapping], positions: Sequence[RealPosition]) -> Replay:
    batch: list[Decided] = []
    known = {p.ticket for p in positions}
    added: list[RealPosition] = []
    unreadable: list[NotCarriedOut] = []
    for intent in intents:
        try:
            decided, named = _decided(intent)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a schema error is a ValueError
            unreadable.append(NotCarriedOut(f"unreadable ({type(exc).__name__} {exc})", _client_order_ids(intent)))
            continue
        batch.append(decided)
        for p in named:
            if p.ticket not in known:
                known.add(p.ticket)
                added.append(p)
    return Replay(batch, added, unreadable)


def _decided(intent: Mapping) -> tuple[Decided, list[RealPosition]]:
    sig = messages.from_wire(messages.Signal, intent["signal"])
    closes = [CloseOrder(c["ticket"], c["symbol"], c["lots"], c["client_order_id"], c["reason"])
              for c in intent["closes"]]
    named = [RealPosition(c["ticket"], c["symbol"], Direction(c["direction"]), c["lots"], "")
             for c in intent["closes"] if c["direction"] is not None]
    order = None
    if intent["open"] is not None:
        order = OpenOrder(**{**intent["open"], "direction": Direction(intent["open"]["direction"])})
    ack = Ack.from_dict(intent["ack"]) if intent.get("ack") else None  # an emergency's skip
    return Decided(sig, intent["action"], intent["reason"], intent["allow_open"], closes, order, None, ack), named


def _client_order_ids(intent: Mapping) -> list:
    cids = [c.get("client_order_id") for c in intent.get("closes") or [] if isinstance(c, dict)]
    if isinstance(intent.get("open"), dict):
        cids.append(intent["open"].get("client_order_id"))
    return cids


def v1_symbols(v1_intents: Sequence[Mapping]) -> list[str]:
    """The symbols whose contract size the version-1 intents need, sorted."""
    return sorted({s for intent in v1_intents for s in state_v1.intent_symbols(intent)})


def from_v1(v1_intents: Sequence[Mapping], contract_sizes: Mapping[str, float | None]
            ) -> tuple[list[dict], list[NotCarriedOut]]:
    """Version-1 intents in version-2 form, and the ones that cannot be converted."""
    converted: list[dict] = []
    refused: list[NotCarriedOut] = []
    for intent in v1_intents:
        try:
            converted.append(state_v1.intent_from_v1(intent, contract_sizes))
        except state_v1.LegacyIntentError as exc:
            refused.append(NotCarriedOut(str(exc), _client_order_ids(intent)))
    return converted, refused
