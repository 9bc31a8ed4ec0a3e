"""The sync rule ("golden rule"): real position + signal -> what the executor does, stated once as a table.

`SYNC_TABLE` is the rule. `decide()` classifies the inputs into one token per column and returns the first
row that matches; `render_markdown()` prints the same rows for the README. Nothing else encodes the rule.

Vocabulary:
- a *signal* is the preditor's desired position for a symbol: a direction (WAIT = FLAT, LONG, SHORT) and an
  intensity (0 for WAIT, 1-3 otherwise);
- the *previous signal* is the last signal of that symbol this executor process evaluated; None means the
  executor has evaluated none since it booted (process start or restart);
- an *edge* is a positioned signal whose direction differs from the previous signal's direction: the start
  of a new move. Intensity changes are not edges (see README "Design decisions"). Right after boot (no previous
  signal), a signal seen live says the twin's own direction at the bar before (``twin_previous``): when it
  differs, the move starts at this very bar, watched, and that is an edge too; otherwise it is a first signal.
  So the first live bar decides the same whether or not the warmup's last signal reached the executor first;
- an *orphan* is a real position on a symbol without a loaded model: never touched automatically.

The caller records `previous = signal` after every evaluation, whatever the decision (including SKIP, so a
paused or risk-blocked edge is consumed and the move it started is then a missed entry).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class Direction(IntEnum):
    SHORT = -1
    FLAT = 0  # a FLAT signal is WAIT
    LONG = 1


class SyncAction(StrEnum):
    OPEN = "OPEN"
    CLOSE = "CLOSE"
    CLOSE_THEN_WAIT = "CLOSE_THEN_WAIT"  # close now; the opposite move is entered only on a later edge
    WAIT_SYNC = "WAIT_SYNC"  # flat while the model is positioned: missed entry, wait for an edge
    NOOP = "NOOP"  # already in sync
    SKIP = "SKIP"  # an opening was due but is not allowed (disabled, paused) or the position is an orphan


@dataclass(frozen=True)
class Stance:
    """A direction and an intensity: what a signal asks for, or what the real position is."""

    direction: Direction
    intensity: int = 0

    def __post_init__(self) -> None:
        if self.direction == Direction.FLAT and self.intensity != 0:
            raise ValueError(f"a FLAT/WAIT stance has intensity 0, got {self.intensity}")
        if self.direction != Direction.FLAT and self.intensity not in (0, 1, 2, 3):
            raise ValueError(f"intensity must be 1-3 (0 = unknown for a real position), got {self.intensity}")


FLAT = Stance(Direction.FLAT, 0)


@dataclass(frozen=True)
class SyncInputs:
    """Everything the sync rule reads for one symbol at one signal.

    position: the real position (FLAT when none); its intensity may be 0 when unknown.
    signal: the latest signal; None only for an orphan (no model, so no signal).
    previous: the previous signal evaluated by this process; None right after boot.
    twin_previous: the twin's direction at the bar before the signal, when the signal was seen as it was
    published; read only when ``previous`` is None.
    """

    position: Stance
    signal: Stance | None
    previous: Stance | None = None
    enter_on_first_signal: bool = False
    paused: bool = False
    enabled: bool = True
    orphan: bool = False
    twin_previous: Direction | None = None


@dataclass(frozen=True)
class SyncDecision:
    action: SyncAction
    reason: str
    rule: int  # number of the table row that decided
    alert: bool = False

    @property
    def opens(self) -> bool:
        return self.action == SyncAction.OPEN

    @property
    def closes(self) -> bool:
        return self.action in (SyncAction.CLOSE, SyncAction.CLOSE_THEN_WAIT)


# ---- column tokens. ANY matches every token of a column.

ANY = "*"

# position relative to the signal
P_FLAT = "FLAT"
P_SAME = "same direction"
P_OTHER = "other direction"
# signal
S_WAIT = "WAIT"
S_POSITIONED = "LONG/SHORT"
S_NONE = "none"
# intensity of the real position vs the signal (same direction only)
I_SAME = "same"
I_DIFFERENT = "different"
I_NA = "n/a"
# previous signal's direction vs the signal's direction
PREV_BOOT = "none (just booted)"
PREV_SAME = "same direction"
PREV_OTHER = "other direction (edge)"
YES = "yes"
NO = "no"


@dataclass(frozen=True)
class SyncRule:
    orphan: str
    position: str
    signal: str
    intensity: str
    previous: str
    enter_on_first_signal: str
    enabled: str
    paused: str
    action: SyncAction
    reason: str
    why: str

    def matches(self, tokens: dict[str, str]) -> bool:
        return all(getattr(self, column) in (ANY, token) for column, token in tokens.items())


COLUMNS = ("orphan", "position", "signal", "intensity", "previous", "enter_on_first_signal", "enabled",
           "paused")

# The rule. First matching row wins. Closes come before every gate: pause and disable block openings only.
SYNC_TABLE: tuple[SyncRule, ...] = (
    SyncRule(YES, ANY, ANY, ANY, ANY, ANY, ANY, ANY, SyncAction.SKIP, "ORPHAN",
             "no model owns it: never touched automatically; alert; manual CLOSE only"),
    SyncRule(NO, P_OTHER, S_WAIT, ANY, ANY, ANY, ANY, ANY, SyncAction.CLOSE, "SIGNAL_WAIT",
             "real position differs from the signal: close at once (pause/disable never block a close)"),
    SyncRule(NO, P_OTHER, S_POSITIONED, ANY, ANY, ANY, ANY, ANY, SyncAction.CLOSE_THEN_WAIT, "REVERSAL",
             "close at once; the new move is a missed entry, entered only on a later edge"),
    SyncRule(NO, P_SAME, S_POSITIONED, I_DIFFERENT, ANY, ANY, ANY, ANY, SyncAction.NOOP, "INTENSITY_IGNORED",
             "same direction: the executor never resizes (drift vs paper is expected and reported)"),
    SyncRule(NO, P_SAME, S_POSITIONED, ANY, ANY, ANY, ANY, ANY, SyncAction.NOOP, "SYNCED",
             "real position already matches the signal"),
    SyncRule(NO, P_FLAT, S_WAIT, ANY, ANY, ANY, ANY, ANY, SyncAction.NOOP, "FLAT",
             "flat and the model waits"),
    SyncRule(NO, P_FLAT, S_POSITIONED, ANY, PREV_BOOT, NO, ANY, ANY, SyncAction.WAIT_SYNC, "FIRST_SIGNAL",
             "first signal after boot is not an edge: the move started before we were watching"),
    SyncRule(NO, P_FLAT, S_POSITIONED, ANY, PREV_SAME, ANY, ANY, ANY, SyncAction.WAIT_SYNC, "MISSED_ENTRY",
             "the train left (missed entry, SL/TP hit, closed outside): wait for an edge"),
    SyncRule(NO, P_FLAT, S_POSITIONED, ANY, ANY, ANY, NO, ANY, SyncAction.SKIP, "DISABLED",
             "an opening was due but the symbol is disabled"),
    SyncRule(NO, P_FLAT, S_POSITIONED, ANY, ANY, ANY, YES, YES, SyncAction.SKIP, "PAUSED",
             "an opening was due but the executor is paused"),
    SyncRule(NO, P_FLAT, S_POSITIONED, ANY, PREV_BOOT, YES, YES, NO, SyncAction.OPEN, "FIRST_SIGNAL",
             "enter_on_first_signal is on: the first signal after boot opens"),
    SyncRule(NO, P_FLAT, S_POSITIONED, ANY, PREV_OTHER, ANY, YES, NO, SyncAction.OPEN, "EDGE",
             "a new move starts (direction differs from the previous signal): open"),
)


class SyncInputError(ValueError):
    """The inputs cannot be classified (e.g. a modelled symbol without a signal)."""


def _yes_no(flag: bool) -> str:
    return YES if flag else NO


def classify(inputs: SyncInputs) -> dict[str, str]:
    """One token per column of `SYNC_TABLE`."""
    return dict(zip(COLUMNS, _tokens(inputs), strict=True))


def _tokens(inputs: SyncInputs) -> tuple[str, ...]:
    """`classify`'s tokens, in COLUMNS order."""
    return _tokens_of(inputs.position, inputs.signal, inputs.previous, inputs.enter_on_first_signal, inputs.paused,
                      inputs.enabled, inputs.orphan, inputs.twin_previous)


def _tokens_of(pos: Stance, signal: Stance | None, previous: Stance | None, enter_on_first_signal: bool,
               paused: bool, enabled: bool, orphan: bool, twin_previous: Direction | None) -> tuple[str, ...]:
    if signal is None:
        if not orphan:
            raise SyncInputError("signal is required for a symbol with a model (only orphans have none)")
        return (YES, ANY, S_NONE, I_NA, ANY, _yes_no(enter_on_first_signal), _yes_no(enabled), _yes_no(paused))
    if pos.direction == Direction.FLAT:
        position = P_FLAT
    elif pos.direction == signal.direction:
        position = P_SAME
    else:
        position = P_OTHER
    intensity = I_NA
    if position == P_SAME:
        known = pos.intensity != 0
        intensity = I_DIFFERENT if known and pos.intensity != signal.intensity else I_SAME
    if previous is None:
        turned = twin_previous is not None and twin_previous != signal.direction
        previous_token = PREV_OTHER if turned else PREV_BOOT
    elif previous.direction == signal.direction:
        previous_token = PREV_SAME
    else:
        previous_token = PREV_OTHER
    return (_yes_no(orphan), position, S_WAIT if signal.direction == Direction.FLAT else S_POSITIONED,
            intensity, previous_token, _yes_no(enter_on_first_signal), _yes_no(enabled), _yes_no(paused))


def decide(inputs: SyncInputs) -> SyncDecision:
    """The sync decision for one symbol: the first row of `SYNC_TABLE` that matches the inputs."""
    return _decided(_tokens(inputs))


def decide_of(position: Stance, signal: Stance | None, previous: Stance | None, *, enter_on_first_signal: bool,
              paused: bool, enabled: bool, orphan: bool, twin_previous: Direction | None) -> SyncDecision:
    """`decide(SyncInputs(...))` of these fields, without the record (the executor decides every signal with it)."""
    return _decided(_tokens_of(position, signal, previous, enter_on_first_signal, paused, enabled, orphan,
                               twin_previous))


def _decided(key: tuple[str, ...]) -> SyncDecision:
    found = _DECIDED.get(key)
    if found is None:
        found = _DECIDED[key] = _first_match(dict(zip(COLUMNS, key, strict=True)))
    return found


def _first_match(tokens: dict[str, str]) -> SyncDecision:
    for number, rule in enumerate(SYNC_TABLE, start=1):
        if rule.matches(tokens):
            return SyncDecision(rule.action, rule.reason, number, alert=rule.reason == "ORPHAN")
    raise SyncInputError(f"no sync rule matches {tokens}")  # the tests prove this is unreachable


# tokens (in COLUMNS order) -> the decision of the table for them: the table is read once per combination of
# tokens (a few dozen occur), not once per signal
_DECIDED: dict[tuple[str, ...], SyncDecision] = {}


def render_markdown() -> str:
    """The sync table as markdown (for the README)."""
    header = ["#", "orphan", "real position vs signal", "signal", "real intensity vs signal",
              "previous signal", "enter_on_first_signal", "enabled", "paused", "decision", "reason", "why"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for number, rule in enumerate(SYNC_TABLE, start=1):
        cells = [str(number), rule.orphan, rule.position, rule.signal, rule.intensity, rule.previous,
                 rule.enter_on_first_signal, rule.enabled, rule.paused, f"**{rule.action.value}**",
                 rule.reason, rule.why]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
