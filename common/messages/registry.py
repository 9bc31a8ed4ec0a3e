"""The wire's two registries, filled as ``common/messages/`` defines its records: ``EVENTS`` (published records,
by envelope ``type``) and ``OPS`` (request operations, by ``op``, with their argument and result records)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.schema import OneOf, fields_of

EVENTS: dict[str, type] = {}
_TYPE_NAMES: dict[type, str] = {}


def event(name: str):
    def register(cls: type) -> type:
        EVENTS[name] = cls
        _TYPE_NAMES[cls] = name
        fields_of(cls)
        return cls

    return register


def type_name(record: Any) -> str:
    try:
        return _TYPE_NAMES[type(record)]
    except KeyError:
        raise TypeError(f"{type(record).__name__} is not a registered event") from None


@dataclass(frozen=True, slots=True)
class OpSpec:
    name: str
    args: type
    result: type | OneOf | None  # OneOf: the record named by a field of the answer (status, command)
    doc: str


OPS: dict[str, OpSpec] = {}


def op(name: str, args: type, result: type | OneOf | None, doc: str) -> OpSpec:
    spec = OpSpec(name, args, result, doc)
    OPS[name] = spec
    fields_of(args)
    if isinstance(result, OneOf):
        result.check()
    elif result is not None:
        fields_of(result)
    return spec
