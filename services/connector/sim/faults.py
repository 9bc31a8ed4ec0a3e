"""The simulator's fault rules, set through the control port (control.py): where frames enter and leave
(silence, refused connections, delays, swallowed requests, throttling, order errors; connections.py) and where
orders fill (rejections, partial fills, slippage; ops_trading.py). A rule with a `count` is used up that many times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Faults:
    silent_until: float = 0.0
    refuse_until: float = 0.0
    delay: list[dict[str, Any]] = field(default_factory=list)  # {"seconds", "count", "types"}
    swallow: list[dict[str, Any]] = field(default_factory=list)  # {"count", "types"}
    reject: list[dict[str, Any]] = field(default_factory=list)  # {"count", "code"}
    throttle: list[dict[str, Any]] = field(default_factory=list)  # {"count", "types"}: REQUEST_FREQUENCY_EXCEEDED
    partial: list[dict[str, Any]] = field(default_factory=list)  # {"count", "fraction"}: market orders in 2 deals
    slippage: list[dict[str, Any]] = field(default_factory=list)  # {"count", "points"}: fills that much worse
    order_error: list[dict[str, Any]] = field(default_factory=list)  # {"count", "code"}: ProtoOAOrderErrorEvent

    @staticmethod
    def take(rules: list[dict[str, Any]], type_name: str | None) -> dict[str, Any] | None:
        for rule in rules:
            types = rule.get("types")
            if types and type_name not in types:
                continue
            rule["count"] = rule.get("count", 1) - 1
            if rule["count"] <= 0:
                rules.remove(rule)
            return rule
        return None

