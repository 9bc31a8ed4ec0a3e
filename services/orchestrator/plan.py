"""The declared tables of the system's lifecycle, and the pure decision of what a service does next.

- ``BOOT``: the seed's boot order as steps, each owned by one service and gated on the steps it
  needs. A service gets ``go STEP`` only when every needed step is done by the *current* process
  of its owner (a restarted owner must redo its steps first).
- ``REACT``: rest_for_one, per table: when a service restarts, which dependents must redo which
  step once it is back (a restarted connector: executor reconciles, preditor and paper fill gaps).
- ``SHUTDOWN``: the seed's shutdown order (stop signals and close_on_exit, end the session with
  its stats, disconnect the broker).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from common.messages import Instruction


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    service: str
    needs: tuple[str, ...] = ()


BOOT: tuple[Step, ...] = (
    Step("persistence.open", "persistence"),
    Step("preditor.load", "preditor", ("persistence.open",)),
    Step("executor.load", "executor", ("preditor.load",)),
    Step("paper.load", "paper", ("executor.load",)),
    Step("connector.connect", "connector", ("paper.load",)),
    Step("executor.sync", "executor", ("connector.connect",)),
    Step("preditor.warmup", "preditor", ("executor.sync",)),
    Step("paper.warmup", "paper", ("executor.sync",)),
    Step("persistence.session", "persistence", ("preditor.warmup", "paper.warmup")),
)

REACT: dict[str, tuple[tuple[str, str], ...]] = {
    "connector": (("executor", "executor.sync"), ("preditor", "preditor.warmup"), ("paper", "paper.warmup")),
    # bars the preditor decided during its warmup (closed while it was down) go out as catch-up signals: the
    # executor takes the latest position from `last_signals` at its sync, paper what it did not hear from
    # `signals_since` at its warmup
    "preditor": (("executor", "executor.sync"), ("paper", "paper.warmup")),
    "persistence": (),
    "executor": (),
    "paper": (),
}

SHUTDOWN: tuple[tuple[str, str], ...] = (
    ("executor", "executor.stop"),
    ("persistence", "persistence.close_session"),
    ("connector", "connector.disconnect"),
)

_BY_NAME = {s.name: s for s in BOOT}


def steps_of(service: str) -> list[Step]:
    return [s for s in BOOT if s.service == service]


def is_done(step: str, done: Mapping[str, Set[str]]) -> bool:
    return step in done.get(_BY_NAME[step].service, ())


def instruction(service: str, done: Mapping[str, Set[str]], halted_or_stopping: bool = False) -> Instruction:
    """What ``service`` does next, given the steps each service's current process has done."""
    if halted_or_stopping:
        return Instruction("wait", reason="system is stopping")
    for step in steps_of(service):
        if step.name in done.get(service, ()):
            continue
        missing = [n for n in step.needs if not is_done(n, done)]
        if missing:
            return Instruction("wait", reason=f"{step.name} waits for {', '.join(missing)}")
        return Instruction("go", step=step.name)
    return Instruction("run")


def all_done(done: Mapping[str, Set[str]]) -> bool:
    return all(is_done(s.name, done) for s in BOOT)


def check_tables() -> None:
    """The tables are consistent: needs refer to earlier steps; reactions to real steps."""
    seen: set[str] = set()
    for s in BOOT:
        for n in s.needs:
            if n not in seen:
                raise ValueError(f"{s.name} needs {n}, which is not an earlier step")
        seen.add(s.name)
    for deps in REACT.values():
        for service, step in deps:
            if step not in _BY_NAME or _BY_NAME[step].service != service:
                raise ValueError(f"reaction {service}:{step} is not a step of {service}")
