"""The executor's state file as values: what survives a restart, its JSON form, and the migration of older files.
Pure (the service reads and writes the file).

Version 2 (this one) speaks lots and price distances:

    {"version": 2, "paused": false, "risk": {...},
     "last": {SYM: {"bar_time", "direction", "intensity"}},      # the last signal evaluated per symbol
     "acks": [ack records],                                       # of the last orders answered, handed over again
     "intents": [{"signal", "action", "reason", "allow_open",     # orders out now, written ahead
                  "closes": [{"ticket", "symbol", "lots", "client_order_id", "reason", "direction"}],
                  "open": {"symbol", "direction", "lots", "sl_distance", "tp_distance", "label",
                           "client_order_id", "requested_lots", "off_step"} | null, "ack": ack | null}],
     "v1_intents": [...],                                         # version-1 intents not carried out yet
     "due_closes": [due close]}                                   # closes refused as MARKET_CLOSED (due_closes.py)

On disk (common/durable.py `JournaledState`): `<state_file>` is a snapshot of this object (with `journal_seq`, the
last journal entry it includes) and `<state_file>.journal` holds one line per save since, with the sections that
changed (`{"seq": n, "set": {"intents": [...], "acks": [...], "last": {...}}}`), written with one write and one
fdatasync. A batch of signals costs two such lines: the one written ahead of its orders (their intents, the stances
decided; fdatasynced before the orders leave) and the one after they land (the intents gone, the acks of the orders
answered; in the OS at once, on the disk with the next fdatasync: a power cut that loses it leaves the intents,
whose orders go again with the same client order ids); the rest of the object is not rewritten. The acks of the
signals with no order (most of a batch) are in the line written ahead of the batch's orders (`acks`), and go to the
outbox's spool file right after the orders left, off their path: a kill between the two leaves them in the state,
handed to persistence again at the next start under their ids (so each once), their signals decided. A batch
with no order at all spools them before the line that names its signals decided (in the OS at once, so a kill loses
none; a kill between the two leaves the signals undecided, evaluated again by the next process under its own epoch,
as at any restart). The line written ahead never folds a journal grown past its size into a snapshot (three fsyncs
the orders would wait for): the next line does. The sections a
person acts on and that change rarely (`COMPACT_ON`: pause, closes due at the open, version-1 orders), a command, a
halt, a replay after a restart and an ordered stop fold the journal into a new snapshot at once, so the snapshot
shows them; so does a journal past 256 KB (some 40 batches of 20 signals). A torn last journal line (a kill
mid-write) is dropped: its save had not returned, so no order it wrote ahead had left. A file without `journal_seq`
(the format before the journal) is read as it is and written back as a snapshot at once. What arrives between
batches (a higher equity peak, a closed position's loss streak) is appended without its own fdatasync: in the OS at
once (a kill -9 loses nothing), on the disk with the next batch's fdatasync.

Why a journal and not SQLite in WAL mode: the state is a handful of JSON sections read whole once at start and
replaced whole at each save, never queried; an appended line is exactly the changed sections plus one fdatasync,
where SQLite adds its page and WAL framing, a checkpoint that fsyncs the database too, and a C extension call per
statement on the hot path. And the snapshot stays the JSON file a person (and the version-1 upgrade path) reads.

Version 1 (volumes and stops in the broker's protocol units) is read and converted: `paused`, `risk`, `last`
as they are; its `acks` records are handed to persistence again unchanged (they are version-1 records, already
stored or not, with the same ids); its intents need each symbol's contract size to become lots, which only the
connector knows, so they are kept as `v1_intents` and converted by the service when it replays them
(`state_v1.intent_from_v1`). Every conversion is reported in `notes` for the log; nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.executor import due_closes
from services.executor.due_closes import DueCloses
from services.executor.risk import RiskState
from services.executor.sync import Direction, Stance

STATE_VERSION = 2
V1 = 1
COMPACT_ON = frozenset({"paused", "due_closes", "v1_intents", "version"})  # rare sections: a new snapshot at once


class StateFileError(ValueError):
    """The file cannot be read as any known version."""


@dataclass
class ExecutorState:
    paused: bool = False
    risk: RiskState = field(default_factory=lambda: RiskState(None, None, None))
    last: dict[str, tuple[Stance, int]] = field(default_factory=dict)  # symbol -> (signal stance, bar time)
    ack_records: list[dict] = field(default_factory=list)  # the last evaluation's, for persistence
    intents: list[dict] = field(default_factory=list)
    v1_intents: list[dict] = field(default_factory=list)
    due: DueCloses = field(default_factory=DueCloses)


def to_json(state: ExecutorState) -> dict[str, Any]:
    last = {s: {"bar_time": t, "direction": int(stance.direction), "intensity": stance.intensity}
            for s, (stance, t) in sorted(state.last.items())}
    return {"version": STATE_VERSION, "paused": state.paused, "risk": state.risk.to_dict(), "last": last,
            "acks": list(state.ack_records), "intents": list(state.intents), "v1_intents": list(state.v1_intents),
            "due_closes": state.due.to_list()}


def _dicts(value: Any, what: str, notes: list[str]) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list):
        notes.append(f"{what} is not a list, not read: {value!r}")
        return []
    bad = [v for v in value if not isinstance(v, dict)]
    if bad:
        notes.append(f"{what}: {len(bad)} entries that are not records, not read: {bad!r}")
    return [v for v in value if isinstance(v, dict)]


def _common(data: dict[str, Any], notes: list[str]) -> ExecutorState:
    state = ExecutorState(paused=bool(data.get("paused", False)))
    try:
        state.risk = RiskState.from_dict(data["risk"])
    except (KeyError, TypeError, ValueError) as exc:
        notes.append(f"risk state unreadable ({type(exc).__name__} {exc}): starting from none")
    for symbol, last in (data.get("last") or {}).items():
        try:
            state.last[symbol] = (Stance(Direction(last["direction"]), int(last["intensity"])),
                                  int(last["bar_time"]))
        except (KeyError, TypeError, ValueError) as exc:
            notes.append(f"last signal of {symbol} unreadable ({type(exc).__name__} {exc}): its next signal is "
                         "a first signal")
    return state


def from_json(data: Any) -> tuple[ExecutorState, list[str]]:
    """The state in a decoded file, and notes on what was converted or could not be read (for the log)."""
    if not isinstance(data, dict):
        raise StateFileError(f"not a JSON object: {type(data).__name__}")
    version = data.get("version")
    notes: list[str] = []
    if version == STATE_VERSION:
        state = _common(data, notes)
        state.ack_records = _dicts(data.get("acks"), "acks", notes)
        state.intents = _dicts(data.get("intents"), "intents", notes)
        state.v1_intents = _dicts(data.get("v1_intents"), "v1_intents", notes)
        state.due, problems = due_closes.from_list(data.get("due_closes"))
        notes += problems
        return state, notes
    if version == V1:
        state = _common(data, notes)
        state.ack_records = _dicts(data.get("acks"), "acks", notes)
        if state.ack_records:
            notes.append(f"version 1: {len(state.ack_records)} ack records handed to persistence again as written "
                         "(their volume in protocol units)")
        raw = data.get("intents", [data["intent"]] if isinstance(data.get("intent"), dict) else [])
        state.v1_intents = _dicts(raw, "intents", notes)
        if state.v1_intents:
            notes.append(f"version 1: {len(state.v1_intents)} orders written ahead in protocol units; converted "
                         "to lots with each symbol's contract size when they are carried out")
        notes.append("version 1 state converted to version 2 (written at the next save)")
        return state, notes
    raise StateFileError(f"version {version!r}, expected {STATE_VERSION} (or {V1}, converted)")
