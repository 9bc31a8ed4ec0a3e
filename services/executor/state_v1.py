"""Orders written ahead by a version-1 executor, converted to the lots and price distances of version 2. Pure.

This is the only module of the executor that knows the old cTrader units, and only to read what an older executor
wrote before it died: volumes in cents of a unit (a forex lot = 100 000 units = 10 000 000) and relative stops in
1/100000 of a price. The unit test that keeps cTrader units out of `services/executor` names this file as its one
exception. Delete it once no version-1 state file can exist any more.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_CENTS_PER_UNIT = 100  # version-1 protocol volume: cents of a unit
_RELATIVE_PER_PRICE = 100_000  # version-1 relative stop: 1/100000 of a price
_DECIMALS = 10


class LegacyIntentError(ValueError):
    """A version-1 intent that cannot be converted (its symbol's contract size is unknown, or it is malformed)."""


def _lots(volume: Any, contract_size: float) -> float:
    if isinstance(volume, bool) or not isinstance(volume, int | float) or volume <= 0:
        raise LegacyIntentError(f"volume {volume!r} is not a positive protocol volume")
    return round(volume / (contract_size * _CENTS_PER_UNIT), _DECIMALS)


def _distance(relative: Any) -> float | None:
    if relative is None or relative == 0:
        return None
    if isinstance(relative, bool) or not isinstance(relative, int | float) or relative < 0:
        raise LegacyIntentError(f"relative stop {relative!r} is not a positive integer")
    return round(relative / _RELATIVE_PER_PRICE, _DECIMALS)


def intent_symbols(intent: Mapping[str, Any]) -> set[str]:
    """The symbols whose contract size the conversion needs."""
    symbols = {c.get("symbol") for c in intent.get("closes") or [] if isinstance(c, Mapping)}
    if isinstance(intent.get("open"), Mapping):
        symbols.add(intent["open"].get("symbol"))
    return {s for s in symbols if isinstance(s, str)}


def intent_from_v1(intent: Mapping[str, Any], contract_sizes: Mapping[str, float | None]) -> dict[str, Any]:
    """A version-1 intent in version-2 form, given the contract size (units per lot) of its symbols."""
    def size(symbol: Any) -> float:
        value = contract_sizes.get(symbol) if isinstance(symbol, str) else None
        if value is None or not value > 0:
            raise LegacyIntentError(f"no contract size for {symbol!r}: its volume cannot become lots")
        return float(value)

    try:
        closes = [{"ticket": c["ticket"], "symbol": c["symbol"], "lots": _lots(c["volume"], size(c["symbol"])),
                   "client_order_id": c["client_order_id"], "reason": c["reason"], "direction": c.get("direction")}
                  for c in intent.get("closes") or []]
        opening = intent.get("open")
        if opening is not None:
            opening = {"symbol": opening["symbol"], "direction": opening["direction"],
                       "lots": _lots(opening["volume"], size(opening["symbol"])),
                       "sl_distance": _distance(opening.get("relative_stop_loss")),
                       "tp_distance": _distance(opening.get("relative_take_profit")), "label": opening["label"],
                       "client_order_id": opening["client_order_id"], "requested_lots": None, "off_step": None}
        ack = intent.get("ack")
        if isinstance(ack, Mapping) and ack.get("volume") is not None:
            ack = {**ack, "volume": _lots(ack["volume"], size(ack.get("symbol")))}
        return {"signal": intent["signal"], "action": intent["action"], "reason": intent["reason"],
                "allow_open": intent["allow_open"], "closes": closes, "open": opening, "ack": ack}
    except (KeyError, TypeError, AttributeError) as exc:
        raise LegacyIntentError(f"malformed version-1 intent ({type(exc).__name__} {exc}): {dict(intent)!r}") \
            from exc
