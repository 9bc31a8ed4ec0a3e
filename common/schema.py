"""The schema machinery of the wire's records: a record is a dataclass whose field annotations are the schema.

``from_wire`` validates a decoded map against it (required fields present, types right, unknown fields ignored for
forward compatibility) and builds the record; ``to_wire`` turns a record back into plain maps. A field is flat (a
primitive: one exact-type lookup on the fast path) or nested: a record, a ``list[Record]`` or a
``dict[str, Record]`` (each maybe ``| None``), decoded recursively. A :class:`SchemaError` names the field's path
(``positions[3].volume: expected float, got str``). Pure; the records themselves live in ``common/messages/``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any


class SchemaError(ValueError):
    """A map that does not fit its record; ``path`` names the field (``positions[3].volume``)."""

    def __init__(self, reason: str, path: str = ""):
        super().__init__(f"{path}: {reason}" if path else reason)
        self.reason = reason
        self.path = path

    def within(self, outer: str) -> SchemaError:
        """The same error seen from the record that holds ``outer``."""
        sep = "" if not self.path or self.path.startswith("[") else "."
        return SchemaError(self.reason, f"{outer}{sep}{self.path}")


# Nested fields have an empty ``exact`` set: the flat fields' loop pays nothing for them (their values always take
# the slow branch, which decodes them).

_PRIMITIVES = (int, float, str, bool, dict, list, bytes)


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    name: str
    kinds: tuple[type, ...]  # accepted python types
    optional: bool  # None accepted
    required: bool  # no default
    exact: frozenset  # the same types, for the fast exact-type check (empty for nested fields)
    expected: str  # the kinds in words, for errors
    decode: Any = None  # nested: (raw) -> value, raising SchemaError with a path relative to the value
    encode: Any = None  # nested: (value) -> plain data


_SCHEMAS: dict[type, tuple[_FieldSpec, ...]] = {}
_NESTED: set[type] = set()  # records with at least one nested field
_MISSING = object()


def _is_record(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _kinds(tp: Any) -> tuple[tuple[type, ...], bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        kinds: list[type] = []
        optional = False
        for arg in typing.get_args(tp):
            if arg is type(None):
                optional = True
            else:
                kinds.extend(_kinds(arg)[0])
        return tuple(kinds), optional
    if origin is not None:
        tp = origin
    if tp is Any:
        return (object,), True
    if tp is float:
        return (float, int), False
    if tp in _PRIMITIVES:
        return (tp,), False
    raise TypeError(f"unsupported field type {tp!r}")


def _record_codec(cls: type) -> tuple[Any, Any]:
    fields_of(cls)
    return (lambda raw: from_wire(cls, raw)), to_wire


def _list_codec(cls: type) -> tuple[Any, Any]:
    fields_of(cls)

    def decode(raw: Any) -> list:
        if type(raw) is not list:
            raise SchemaError(f"expected a list, got {type(raw).__name__}")
        out = []
        for i, item in enumerate(raw):
            try:
                out.append(from_wire(cls, item))
            except SchemaError as exc:
                raise exc.within(f"[{i}]") from None
        return out

    return decode, lambda value: [to_wire(item) for item in value]


def _map_codec(cls: type) -> tuple[Any, Any]:
    fields_of(cls)

    def decode(raw: Any) -> dict:
        if type(raw) is not dict:
            raise SchemaError(f"expected a map, got {type(raw).__name__}")
        out = {}
        for key, item in raw.items():
            if type(key) is not str:
                raise SchemaError(f"expected str keys, got {type(key).__name__}")
            try:
                out[key] = from_wire(cls, item)
            except SchemaError as exc:
                raise exc.within(f"[{key}]") from None
        return out

    return decode, lambda value: {key: to_wire(item) for key, item in value.items()}


def _nested(tp: Any) -> tuple[Any, Any, bool, str] | None:
    """(decode, encode, optional, expected) when ``tp`` is a record, list[record], dict[str, record] (or one of
    them | None); None for a flat type."""
    optional = False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) != 1:
            return None
        tp = args[0]
    if _is_record(tp):
        return *_record_codec(tp), optional, tp.__name__
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list and len(args) == 1 and _is_record(args[0]):
        return *_list_codec(args[0]), optional, f"list of {args[0].__name__}"
    if origin is dict and len(args) == 2 and _is_record(args[1]):
        return *_map_codec(args[1]), optional, f"map of {args[1].__name__}"
    return None


def _field_spec(name: str, tp: Any, required: bool) -> _FieldSpec:
    nested = _nested(tp)
    if nested is not None:
        decode, encode, optional, expected = nested
        return _FieldSpec(name, (), optional, required, frozenset(), expected, decode, encode)
    kinds, optional = _kinds(tp)
    expected = "float" if kinds == (float, int) else " or ".join(k.__name__ for k in kinds)
    return _FieldSpec(name, kinds, optional, required, frozenset(kinds), expected)


def fields_of(cls: type) -> tuple[_FieldSpec, ...]:
    spec = _SCHEMAS.get(cls)
    if spec is None:
        hints = typing.get_type_hints(cls)
        specs = []
        for f in dataclasses.fields(cls):
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            specs.append(_field_spec(f.name, hints[f.name], required))
        spec = _SCHEMAS[cls] = tuple(specs)
        if any(s.decode is not None for s in spec):
            _NESTED.add(cls)
    return spec


@dataclass(frozen=True)
class OneOf:
    """A result whose record is chosen by one of its fields: ``status`` by ``service`` (each process's report),
    ``command`` by ``command`` (each command's answer). A value not listed is refused unless ``default`` is set
    (e.g. a process that is not one of the services: its report decoded as the part every process has)."""

    tag: str
    records: dict[str, type]
    default: type | None = None

    def pick(self, raw: Any) -> type:
        if type(raw) is not dict:
            raise SchemaError(f"expected a map, got {type(raw).__name__}")
        value = raw.get(self.tag, _MISSING)
        if value is _MISSING:
            raise SchemaError("missing", self.tag)
        cls = self.records.get(value) if type(value) is str else None
        if cls is None:
            if self.default is None:
                raise SchemaError(f"expected one of {', '.join(sorted(self.records))}, got {value!r}"[:200],
                                  self.tag)
            cls = self.default
        return cls

    def check(self) -> None:
        for cls in (*self.records.values(), *([self.default] if self.default else [])):
            fields_of(cls)


def from_wire(cls: type | OneOf, raw: Any) -> Any:
    """Validate a decoded map against ``cls`` and build the record; a SchemaError names the field's path."""
    if isinstance(cls, OneOf):
        cls = cls.pick(raw)
    if type(raw) is not dict:
        raise SchemaError(f"expected a map, got {type(raw).__name__}")
    values = {}
    get = raw.get
    for f in _SCHEMAS.get(cls) or fields_of(cls):
        value = get(f.name, _MISSING)
        if value is _MISSING:
            if f.required:
                raise SchemaError("missing", f.name)
            continue
        if type(value) not in f.exact:  # the common case costs one set lookup
            if value is None:
                if not f.optional:
                    raise SchemaError(f"expected {f.expected}, got null", f.name)
            elif f.decode is not None:
                try:
                    value = f.decode(value)
                except SchemaError as exc:
                    raise exc.within(f.name) from None
            elif not isinstance(value, f.kinds) or (isinstance(value, bool) and bool not in f.kinds):
                raise SchemaError(f"expected {f.expected}, got {type(value).__name__}", f.name)
        values[f.name] = value
    return cls(**values)


def to_wire(record: Any) -> Any:
    """A record as a plain map, nested records as maps too (non-dataclass values pass through)."""
    cls = type(record)
    specs = _SCHEMAS.get(cls)
    if specs is None:
        if not dataclasses.is_dataclass(record):
            return record
        specs = fields_of(cls)
    if cls in _NESTED:
        out = {}
        for f in specs:
            value = getattr(record, f.name)
            out[f.name] = value if f.encode is None or value is None else f.encode(value)
        return out
    return {f.name: getattr(record, f.name) for f in specs}
