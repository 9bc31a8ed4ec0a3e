"""Order label (cTrader `label`, at most 100 characters) and client order id.

Label format, version 1, fields separated by `|`, an empty field = unknown:

    OT1|<client order id>|<hmm>|<action>|<intensity>|<balance>|<dd %>|<virtual pnl>|<spread>|<model>
    OT1|EURUSD-t6b400-O|3|1|1|10234|0.5|12.40|0.8|a1b2c3d4

| field | format |
|---|---|
| `OT1` | prefix + format version; a label without the `OT` prefix is not ours |
| client order id | see `client_order_id()`; the same id is sent as cTrader `clientOrderId` |
| hmm state | int >= 0 |
| action index | int 0-6 (the policy's action) |
| intensity | int 0-3 |
| balance | account balance, whole deposit-currency units (truncated) |
| dd % | drawdown from the session start balance, 1 decimal |
| virtual pnl | the twin's virtual PnL, 2 decimals |
| spread pips | live spread at the decision, 1 decimal |
| model | model hash, up to 8 hex characters |

`encode` never truncates: a label over 100 characters raises `OrderLabelError`.

Client order id: `<symbol tag>-<bar time base36>-<action code>[<seq base36>]`, at most 40 characters
(cTrader `clientOrderId` allows 50). Deterministic in (symbol, signal bar time, action, seq): a retry after a
timeout or a restart computes the same id, so the connector can tell it already sent that order.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum

PREFIX = "OT"
VERSION = 1
MAX_LABEL = 100
MAX_CLIENT_ORDER_ID = 40
_SEP = "|"
_FIELDS = 10
_TAG_MAX = 12
_CID_RE = re.compile(r"^([A-Z0-9]{1,12}|[A-Z0-9]{0,12}_[0-9a-f]{4})-([0-9a-z]{1,13})-([A-Z])([0-9a-z]*)$")
_HASH_RE = re.compile(r"^[0-9a-f]{0,8}$")


class OrderLabelError(ValueError):
    """A label or client order id cannot be encoded or parsed."""


class OrderAction(StrEnum):
    OPEN = "O"
    CLOSE = "C"  # the sync rule closes (signal WAIT or reversal)
    MANUAL_CLOSE = "M"  # a person's CLOSE / CLOSE_ALL command
    EMERGENCY_CLOSE = "E"  # emergency drawdown: close everything and halt


# ---- client order id

def _base36(value: int) -> str:
    if value < 0:
        raise OrderLabelError(f"cannot encode a negative number {value}")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        value, rest = divmod(value, 36)
        out = digits[rest] + out
        if value == 0:
            return out


def symbol_tag(symbol: str) -> str:
    """Upper-case alphanumerics of the symbol (at most 12); a 4-hex hash is added when anything was dropped,
    so `US500.cash` and `US500` never share a tag."""
    if not symbol:
        raise OrderLabelError("symbol is empty")
    clean = re.sub(r"[^A-Za-z0-9]", "", symbol).upper()
    tag = clean[:_TAG_MAX]
    if tag != symbol or not tag:
        tag = f"{tag}_{hashlib.sha1(symbol.encode()).hexdigest()[:4]}"
    return tag


def client_order_id(symbol: str, bar_time: int, action: OrderAction, seq: int = 0) -> str:
    """Deterministic order id from (symbol, the signal's bar time in seconds, action, optional seq)."""
    if bar_time < 0:
        raise OrderLabelError(f"bar_time must be >= 0, got {bar_time}")
    action = OrderAction(action)
    cid = f"{symbol_tag(symbol)}-{_base36(int(bar_time))}-{action.value}{_base36(seq) if seq else ''}"
    if len(cid) > MAX_CLIENT_ORDER_ID:
        raise OrderLabelError(f"client order id {cid!r} longer than {MAX_CLIENT_ORDER_ID}")
    return cid


@dataclass(frozen=True)
class ClientOrderId:
    tag: str
    bar_time: int
    action: OrderAction
    seq: int

    def is_for(self, symbol: str) -> bool:
        return self.tag == symbol_tag(symbol)


def parse_client_order_id(cid: str) -> ClientOrderId:
    match = _CID_RE.match(cid)
    if not match:
        raise OrderLabelError(f"not a client order id of ours: {cid!r}")
    tag, time36, code, seq36 = match.groups()
    try:
        action = OrderAction(code)
    except ValueError as exc:
        raise OrderLabelError(f"unknown action code {code!r} in {cid!r}") from exc
    return ClientOrderId(tag, int(time36, 36), action, int(seq36, 36) if seq36 else 0)


# ---- label

@dataclass(frozen=True)
class OrderLabel:
    client_order_id: str
    hmm_state: int | None = None
    action_index: int | None = None
    intensity: int | None = None
    balance: int | None = None
    drawdown_pct: float | None = None
    virtual_pnl: float | None = None
    spread_pips: float | None = None
    model_hash: str = ""


def _int(value: int | None, name: str, low: int, high: int | None = None) -> str:
    if value is None:
        return ""
    bad_type = isinstance(value, bool) or not isinstance(value, int)
    if bad_type or value < low or (high is not None and value > high):
        raise OrderLabelError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return str(value)


def _dec(value: float | None, places: int) -> str:
    return "" if value is None else f"{value:.{places}f}"


def encode(label: OrderLabel) -> str:
    """The label string; `OrderLabelError` when a field is invalid or the result exceeds 100 characters."""
    parse_client_order_id(label.client_order_id)
    if not _HASH_RE.match(label.model_hash):
        raise OrderLabelError(f"model_hash must be up to 8 lower-case hex characters, got {label.model_hash!r}")
    fields = [
        f"{PREFIX}{VERSION}",
        label.client_order_id,
        _int(label.hmm_state, "hmm_state", 0),
        _int(label.action_index, "action_index", 0, 6),
        _int(label.intensity, "intensity", 0, 3),
        _int(label.balance, "balance", -10**12),
        _dec(label.drawdown_pct, 1),
        _dec(label.virtual_pnl, 2),
        _dec(label.spread_pips, 1),
        label.model_hash,
    ]
    text = _SEP.join(fields)
    if len(text) > MAX_LABEL:
        raise OrderLabelError(f"label is {len(text)} characters, the limit is {MAX_LABEL}: {text!r}")
    return text


def balance_field(balance: float) -> int:
    """Balance as written in the label: whole units, truncated toward zero."""
    return int(balance)


def is_ours(label: str | None) -> bool:
    return bool(label) and label.startswith(PREFIX)


def parse(text: str) -> OrderLabel:
    if not is_ours(text):
        raise OrderLabelError(f"not an Oracle Trader label: {text!r}")
    parts = text.split(_SEP)
    if parts[0] != f"{PREFIX}{VERSION}":
        raise OrderLabelError(f"unsupported label version {parts[0]!r}")
    if len(parts) != _FIELDS:
        raise OrderLabelError(f"label has {len(parts)} fields, expected {_FIELDS}: {text!r}")
    _, cid, hmm, action, intensity, balance, dd, vp, spread, model = parts
    try:
        label = OrderLabel(
            client_order_id=cid,
            hmm_state=int(hmm) if hmm else None,
            action_index=int(action) if action else None,
            intensity=int(intensity) if intensity else None,
            balance=int(balance) if balance else None,
            drawdown_pct=float(dd) if dd else None,
            virtual_pnl=float(vp) if vp else None,
            spread_pips=float(spread) if spread else None,
            model_hash=model,
        )
    except ValueError as exc:
        raise OrderLabelError(f"bad number in label {text!r}: {exc}") from exc
    encode(label)  # same validation both ways
    return label
