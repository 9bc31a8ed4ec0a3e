"""Who may call each request op: one table, checked by every Responder before a handler runs (common/bus.py).

A caller's role comes from its identity on the wire (common/peer.py): its CURVE key's name (``executor``,
``preditor-1``: role ``preditor``, the name's kind) or, on ``ipc://`` without CURVE, the process at the other end
(a service run by supervisord or as ``python -m services.<name>``; any other process of our user is the operator;
another user is no one). ``tcp://`` without CURVE is loopback only, and its callers are the operator, as before.

Pure: no I/O. ``CALLERS`` names every op of ``messages.OPS`` (a test holds them equal).
"""

from __future__ import annotations

from common.programs import kind_of

ORCHESTRATOR = "orchestrator"
OPERATOR = "operator"
CONNECTOR = "connector"
PREDITOR = "preditor"
EXECUTOR = "executor"
PAPER = "paper"
PERSISTENCE = "persistence"
NOTIFIER = "notifier"
WEB = "web"

WORKERS = frozenset({CONNECTOR, PREDITOR, EXECUTOR, PAPER, PERSISTENCE})  # the services the orchestrator boots
SERVICES = WORKERS | {ORCHESTRATOR}
CORE = SERVICES | {OPERATOR}  # the trading system's own roles and a person
# the auxiliary programs (web, notifier: common/config.py AUXILIARY): off the trading path, never booted, read-only. ANY
# does not include them: each may call exactly the read ops listed for it in AUXILIARY_READS, every other op is
# refused it `forbidden`
AUXILIARY = frozenset({WEB, NOTIFIER})
ROLES = CORE | AUXILIARY

ANY = "any"  # every known role of the system and the operator (never an unknown caller, never an auxiliary): reads
SELF = "self"  # only the service the request's ``service`` argument names, itself (hello, ready)

FORBIDDEN = "forbidden"  # the error reply's code of a refused call

# op -> who may call it: a set of roles, ANY or SELF
CALLERS: dict[str, frozenset[str] | str] = {
    # the boot handshake, to the orchestrator: the service itself (its pid and epoch are checked there too)
    "hello": SELF,
    "ready": SELF,
    # anyone known: reads
    "status": ANY,
    "ping": ANY,
    "history": ANY,
    "symbol_info": ANY,
    "account": ANY,
    "positions": ANY,
    "last_signals": ANY,
    "signals_since": ANY,
    "virtual_positions": ANY,
    "query": ANY,
    # lifecycle and the system's state: the orchestrator drives the steps; a person may too
    "step": frozenset({ORCHESTRATOR, OPERATOR}),
    "stop": frozenset({ORCHESTRATOR, OPERATOR}),
    "clear_halt": frozenset({ORCHESTRATOR, OPERATOR}),
    # the connector's effects: orders by the executor (or a person); bars published for those who read them
    "order_open": frozenset({EXECUTOR, OPERATOR}),
    "order_close": frozenset({EXECUTOR, OPERATOR}),
    "order_amend": frozenset({EXECUTOR, OPERATOR}),
    "subscribe": frozenset({PREDITOR, PAPER, EXECUTOR, OPERATOR}),
    # the executor's operator commands (pause, close, set_symbol_config, ...): `oracle ctl`
    "command": frozenset({OPERATOR}),
    # persistence's records: every service's outbox (and a person's)
    "write": CORE,
    # another host's agent (services/orchestrator/agent.py): that host's supervisord, for the orchestrator
    "host_processes": frozenset({ORCHESTRATOR, OPERATOR}),
    "host_signal": frozenset({ORCHESTRATOR, OPERATOR}),
    "host_start": frozenset({ORCHESTRATOR, OPERATOR}),
    "host_stop": frozenset({ORCHESTRATOR, OPERATOR}),
    "host_shutdown": frozenset({ORCHESTRATOR, OPERATOR}),
}


# auxiliary role -> the read ops it calls (and nothing else): the notifier reads the store's session summaries
AUXILIARY_READS: dict[str, frozenset[str]] = {
    NOTIFIER: frozenset({"query"}),  # the store's session summaries and what it missed
    WEB: frozenset({"status", "query", "positions"}),  # services/web: the status once, the store's history, the book
}


def declare(op: str, who: frozenset[str] | str) -> None:
    """Who may call an op registered outside common/messages (a test's own process): every op has its callers."""
    if who not in (ANY, SELF) and not (isinstance(who, frozenset) and who <= ROLES):
        raise ValueError(f"callers of {op!r} must be ANY, SELF or a set of roles, not {who!r}")
    CALLERS[op] = who  # type: ignore[index]


def role_of(name: str) -> str | None:
    """The role a key or process name stands for (its kind), or None when it is none of ours."""
    kind = kind_of(name)
    return kind if kind in ROLES else None


def permitted(op: str) -> frozenset[str]:
    """The roles that may call ``op`` (SELF: the services; the name is checked by ``is_self``); none if unknown."""
    who = CALLERS.get(op)
    if who is None:
        return frozenset()
    readers = frozenset(aux for aux, ops in AUXILIARY_READS.items() if op in ops)
    if who == ANY:
        return CORE | readers
    if who == SELF:
        return WORKERS
    assert isinstance(who, frozenset)
    return who | readers


def needs_self(op: str) -> bool:
    return CALLERS.get(op) == SELF


def is_self(name: str, role: str | None, service: str) -> bool:
    """A caller named ``name`` (role ``role``) speaks for ``service``: the same name, or a caller known only by its
    kind (a process run as ``python -m services.preditor``) for a service of that kind (``preditor-1``)."""
    if role is None or role not in WORKERS:
        return False
    return name == service or (name == role and kind_of(service) == role)


def describe(op: str) -> str:
    """Who may call ``op``, in words (for the refusal's message)."""
    who = CALLERS.get(op)
    if who is None:
        return "no one"
    readers = sorted(aux for aux, ops in AUXILIARY_READS.items() if op in ops)
    if who == ANY:
        return ", ".join(["any service or the operator", *readers])
    if who == SELF:
        return "the service itself"
    assert isinstance(who, frozenset)
    return ", ".join(sorted(permitted(op)))
