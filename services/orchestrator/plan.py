"""The declared tables of the system's lifecycle, and the pure decision of what a service does next.

- ``BOOT``: the seed's boot order as steps, each owned by one service and gated on the steps it
  needs. A service gets ``go STEP`` only when every needed step is done by the *current* process
  of its owner (a restarted owner must redo its steps first).
- ``REACT``: rest_for_one, per table: when a service restarts, which dependents must redo which
  step once it is back (a restarted connector: executor reconciles, preditor and paper fill gaps).
- ``SHUTDOWN``: the seed's shutdown order (stop signals and close_on_exit, end the session with
  its stats, disconnect the broker).

The tables name service kinds; a ``Plan`` applies them to the programs of one configuration, where a kind may run
as several programs (the preditor's shards ``preditor-0..N-1``, common/programs.py). Each program does its kind's
steps itself (each shard its own ``preditor.load`` and ``preditor.warmup``, its own step in the boot), a step
another one needs is done when every program of its kind did it (the executor loads once every shard has loaded),
and a restarted program makes its dependents react as its kind does (a shard: the executor syncs, paper warms up;
a connector: every shard warms up again).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from common.config import WORKERS
from common.messages import Instruction
from common.programs import kind_of


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


@dataclass(frozen=True)
class Plan:
    """The tables applied to ``programs``: every program the orchestrator boots (a kind, or its shards)."""

    programs: tuple[str, ...] = WORKERS

    def of_kind(self, kind: str) -> tuple[str, ...]:
        return tuple(p for p in self.programs if kind_of(p) == kind)

    def steps_of(self, program: str) -> list[Step]:
        return [s for s in BOOT if s.service == kind_of(program)]

    def is_done(self, step: str, done: Mapping[str, Set[str]]) -> bool:
        """Done by the current process of every program of the step's kind."""
        return all(step in done.get(p, ()) for p in self.of_kind(_BY_NAME[step].service))

    def instruction(self, program: str, done: Mapping[str, Set[str]],
                    halted_or_stopping: bool = False) -> Instruction:
        """What ``program`` does next, given the steps each program's current process has done."""
        if halted_or_stopping:
            return Instruction("wait", reason="system is stopping")
        for step in self.steps_of(program):
            if step.name in done.get(program, ()):
                continue
            missing = [self._waited(n, done) for n in step.needs if not self.is_done(n, done)]
            if missing:
                return Instruction("wait", reason=f"{step.name} waits for {', '.join(missing)}")
            return Instruction("go", step=step.name)
        return Instruction("run")

    def _waited(self, step: str, done: Mapping[str, Set[str]]) -> str:
        """A step not done yet, with the shards it waits for when its kind runs as several programs."""
        owners = self.of_kind(_BY_NAME[step].service)
        if len(owners) == 1:
            return step
        return f"{step} ({', '.join(p for p in owners if step not in done.get(p, ()))})"

    def all_done(self, done: Mapping[str, Set[str]]) -> bool:
        return all(self.is_done(s.name, done) for s in BOOT)

    def reactions(self, program: str) -> list[tuple[str, str]]:
        """(program, step) each dependent redoes once the restarted ``program`` is back (REACT by kinds)."""
        return [(p, step) for kind, step in REACT.get(kind_of(program), ()) for p in self.of_kind(kind)]

    def shutdown(self) -> list[tuple[str, str]]:
        return [(p, step) for kind, step in SHUTDOWN for p in self.of_kind(kind)]


DEFAULT = Plan()  # one process per service


def steps_of(service: str) -> list[Step]:
    return DEFAULT.steps_of(service)


def is_done(step: str, done: Mapping[str, Set[str]]) -> bool:
    return DEFAULT.is_done(step, done)


def instruction(service: str, done: Mapping[str, Set[str]], halted_or_stopping: bool = False) -> Instruction:
    """What ``service`` does next (one process per service: ``Plan`` for shards)."""
    return DEFAULT.instruction(service, done, halted_or_stopping)


def all_done(done: Mapping[str, Set[str]]) -> bool:
    return DEFAULT.all_done(done)


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
