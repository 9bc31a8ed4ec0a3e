"""Program names and the preditor's shards (pure).

A program is one supervisord process. Its name is its service's *kind* (``preditor``), or ``<kind>-<n>`` for the
n-th of several processes of one kind (``preditor-0``, ``preditor-1``): ``kind_of`` gives the kind back, and the
kind is what a program is and may do (its status record, its role on the wire).

The preditor's models are split over ``preditor.shards`` processes. With one shard the program keeps the plain
name ``preditor`` (nothing else changes). With N > 1, ``assign`` gives each shard its symbols: the explicit lists
of ``preditor.assignment`` when given, else round robin over the configured symbols (``connector.symbols``) in
their order in the config: the i-th symbol goes to shard i mod N. Either way every symbol is in exactly one shard
and no shard is empty (1 <= N <= symbols); the assignment depends on the configuration only, so every process
(the shards themselves, the orchestrator, the executor) computes the same one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_NUMBERED = re.compile(r"^([a-z]+)-(0|[1-9][0-9]*)$")


class ShardError(ValueError):
    pass


def kind_of(program: str) -> str:
    """``preditor-3`` -> ``preditor``; a name without a number is its own kind."""
    m = _NUMBERED.match(program)
    return m.group(1) if m else program


def shard_names(kind: str, shards: int) -> tuple[str, ...]:
    """The programs of a kind run as ``shards`` processes: the kind itself for one, else ``<kind>-0..N-1``."""
    if shards < 1:
        raise ShardError(f"shards must be at least 1, not {shards}")
    return (kind,) if shards == 1 else tuple(f"{kind}-{i}" for i in range(shards))


def shard_name(kind: str, shards: int, index: int | None) -> str:
    """The program name of shard ``index`` of ``shards`` (None: the process was not told its shard)."""
    names = shard_names(kind, shards)
    if shards == 1:
        if index not in (None, 0):
            raise ShardError(f"{kind}.shards is 1: shard {index} does not exist (only 0)")
        return names[0]
    if index is None:
        raise ShardError(f"{kind}.shards is {shards}: start each process with --shard N (0..{shards - 1})")
    if not 0 <= index < shards:
        raise ShardError(f"{kind}.shards is {shards}: shard {index} does not exist (0..{shards - 1})")
    return names[index]


def assign(symbols: Sequence[str], shards: int, explicit: Mapping[str, Sequence[str]] | None = None,
           kind: str = "preditor") -> dict[str, tuple[str, ...]]:
    """Shard program name -> its symbols. ``symbols``: the configured symbols, in the config's order; ``explicit``:
    shard name -> symbols (``preditor.assignment``). Raises ShardError naming what is wrong."""
    names = shard_names(kind, shards)
    if explicit is None:
        if shards == 1:
            return {names[0]: tuple(symbols)}
        if shards > len(symbols):
            raise ShardError(f"{shards} shards for {len(symbols)} symbols: a shard would have no symbol")
        return {name: tuple(symbols[i::shards]) for i, name in enumerate(names)}
    unknown = sorted(set(explicit) - set(names))
    if unknown:
        raise ShardError(f"assignment names {', '.join(unknown)}, not shards of {shards} ({', '.join(names)})")
    out: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    configured = set(symbols)
    for name in names:
        own = tuple(explicit.get(name, ()))
        if not own:
            raise ShardError(f"assignment.{name}: no symbol (every shard needs at least one)")
        for sym in own:
            if sym in owner:
                raise ShardError(f"assignment: {sym} is in {owner[sym]} and in {name} (one shard per symbol)")
            if sym not in configured:
                raise ShardError(f"assignment.{name}: {sym} is not a configured symbol (connector.symbols)")
            owner[sym] = name
        out[name] = own
    missing = [s for s in symbols if s not in owner]
    if missing:
        raise ShardError(f"assignment: {', '.join(missing)} in no shard (every symbol in exactly one)")
    return out
