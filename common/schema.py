"""The schema machinery of the wire's records: a record is a dataclass whose field annotations are the schema.

``from_wire`` validates a decoded map against it (required fields present, types right, unknown fields ignored for
forward compatibility) and builds the record; ``to_wire`` turns a record back into plain maps. A field is flat (a
primitive: one exact-type test on the fast path of the record's compiled decoder) or nested: a record, a
``list[Record]`` or a ``dict[str, Record]`` (each maybe ``| None``), decoded recursively. A :class:`SchemaError`
names the field's path (``positions[3].volume: expected float, got str``). Pure; the records themselves live in
``common/messages/``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from common.programs import kind_of
from common.text import clip


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


# ---- value checks: what a field's value must be beyond its type (finite, in range, one of, not too long) -------
# Declared on the record's field, ``lots: float = field(metadata=check(gt=0, le=MAX_LOTS))``; the field's decoder
# applies it after the type test, so a value out of range is refused when the map is decoded (before any handler
# sees it) with a SchemaError naming the field and the value (truncated). A float field with a check is finite.

CHECK = "check"  # the field metadata key
SHOWN_CHARS = 40  # a refused value is shown at most this long in the error


def shown(value: Any) -> str:
    """``value`` for an error message: its repr, truncated."""
    return clip(repr(value), SHOWN_CHARS)


@dataclass(frozen=True, slots=True)
class Check:
    """The bounds of a field's value: numbers finite and within ``ge``/``gt``/``le``/``lt``, a value one of
    ``one_of``, a text, list or map at most ``max_len`` long. ``None`` passes (optional fields say so by type)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    one_of: tuple = ()
    max_len: int | None = None

    def reason(self, value: Any) -> str:
        """Why ``value`` is refused ("" when it is fine)."""
        if value is None:
            return ""
        if isinstance(value, float | int) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                return f"must be a finite number, got {shown(value)}"
            for bound, ok, words in ((self.ge, lambda b: value >= b, ">="), (self.gt, lambda b: value > b, ">"),
                                     (self.le, lambda b: value <= b, "<="), (self.lt, lambda b: value < b, "<")):
                if bound is not None and not ok(bound):
                    return f"must be {words} {bound:g}, got {shown(value)}"
        if self.one_of and value not in self.one_of:
            return f"must be one of {', '.join(map(repr, self.one_of))}, got {shown(value)}"
        if self.max_len is not None and isinstance(value, str | bytes | list | dict) and len(value) > self.max_len:
            return f"must be at most {self.max_len} long, got {len(value)}: {shown(value)}"
        return ""


def _accepts(rule: Check, numeric: bool, ns: dict, i: int) -> str:
    """The rule as one inline test of ``v`` (a value of the field's type, not None) for the compiled decoder: true
    when it passes. NaN fails every comparison; a number with one bound or none is also tested finite."""
    parts = []
    for bound, op in ((rule.ge, ">="), (rule.gt, ">"), (rule.le, "<="), (rule.lt, "<")):
        if bound is not None:
            parts.append(f"v {op} {bound!r}")
    if numeric and (rule.ge is None and rule.gt is None or rule.le is None and rule.lt is None):
        ns["isfinite"] = math.isfinite
        parts.append("isfinite(v)")
    if rule.one_of:
        ns[f"one_of{i}"] = frozenset(rule.one_of)
        parts.append(f"v in one_of{i}")
    if rule.max_len is not None:
        parts.append(f"len(v) <= {rule.max_len}")
    return " and ".join(parts) or "True"


def check(**bounds: Any) -> dict[str, Check]:
    """Field metadata holding a :class:`Check` (``field(metadata=check(gt=0))``)."""
    return {CHECK: Check(**bounds)}


def check_of(f: dataclasses.Field) -> Check | None:
    return f.metadata.get(CHECK) if f.metadata else None


def _value_check(name: str, rule: Check) -> Any:
    def apply(value: Any) -> Any:
        why = rule.reason(value)
        if why:
            raise SchemaError(why, name)
        return value

    return apply


# Nested fields have an empty ``exact`` set: their values always take the slow path, which decodes them.

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
    return decoder(cls), to_wire


def _list_codec(cls: type) -> tuple[Any, Any]:
    item_decode = decoder(cls)

    def decode(raw: Any) -> list:
        if type(raw) is not list:
            raise SchemaError(f"expected a list, got {type(raw).__name__}")
        try:
            return [item_decode(item) for item in raw]
        except SchemaError:
            for i, item in enumerate(raw):  # again, one by one, to name the item
                try:
                    item_decode(item)
                except SchemaError as exc:
                    raise exc.within(f"[{i}]") from None
            raise

    return decode, lambda value: [to_wire(item) for item in value]


def _map_codec(cls: type) -> tuple[Any, Any]:
    item_decode = decoder(cls)

    def decode(raw: Any) -> dict:
        if type(raw) is not dict:
            raise SchemaError(f"expected a map, got {type(raw).__name__}")
        out = {}
        for key, item in raw.items():
            if type(key) is not str:
                raise SchemaError(f"expected str keys, got {type(key).__name__}")
            try:
                out[key] = item_decode(item)
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
    return spec


# ---- the compiled codecs -------------------------------------------------------------------------
# Each record gets, once, a decoder and an encoder of its own, written out field by field (``exec`` of generated
# source): no per-call loop over the specs, the common value costs one exact-type test, and a decoded record is
# built by setting its slots directly (what a frozen dataclass's ``__init__`` does, without its per-field
# ``object.__setattr__`` calls). Anything unusual (a missing field, null, an int for a float, a subclass, a wrong
# type) takes the field's slow path, which applies the same rules as the spec and raises the same errors.

_DECODERS: dict[type, Any] = {}
_ENCODERS: dict[type, Any] = {}


def _slow_check(f: _FieldSpec, default: Any) -> Any:
    """The field's full check, for a value that failed the fast exact-type test (or is missing)."""
    name, kinds, optional, required, expected = f.name, f.kinds, f.optional, f.required, f.expected
    decode, any_kind, bool_ok = f.decode, object in kinds, bool in kinds
    factory = default if callable(default) and not isinstance(default, _Constant) else None
    constant = default.value if isinstance(default, _Constant) else None

    def check(value: Any) -> Any:
        if value is _MISSING:
            if required:
                raise SchemaError("missing", name)
            return factory() if factory is not None else constant
        if value is None:
            if optional:
                return None
            raise SchemaError(f"expected {expected}, got null", name)
        if decode is not None:
            try:
                return decode(value)
            except SchemaError as exc:
                raise exc.within(name) from None
        if any_kind or (isinstance(value, kinds) and (bool_ok or not isinstance(value, bool))):
            return value
        raise SchemaError(f"expected {expected}, got {type(value).__name__}", name)

    return check


@dataclass(frozen=True, slots=True)
class _Constant:
    value: Any


def _defaults(cls: type) -> dict[str, Any]:
    """Per field: a _Constant (its default), its default factory, or None (required)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = _Constant(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory
        else:
            out[f.name] = None
    return out


def _slot(cls: type, name: str) -> Any:
    """The slot descriptor of field ``name`` (in ``cls`` or the record it extends), None if it is not a slot."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            found = klass.__dict__[name]
            return found if type(found) is types.MemberDescriptorType else None
    return None


def _slots_settable(cls: type) -> bool:
    """True when a record may be built by setting its slots: every field is an init field held in a slot, and no
    ``__post_init__`` nor hand-written ``__init__`` would be skipped (the one dataclasses writes is compiled from a
    string)."""
    init_code = getattr(cls.__init__, "__code__", None)
    if hasattr(cls, "__post_init__") or init_code is None or init_code.co_filename != "<string>":
        return False
    return all(f.init and _slot(cls, f.name) is not None for f in dataclasses.fields(cls))


def _compile(source: str, name: str, namespace: dict) -> Any:
    exec(compile(source, f"<schema codec {name}>", "exec"), namespace)  # noqa: S102 - our own generated source
    return namespace[name]


def decoder(cls: type) -> Any:
    """The compiled ``raw map -> record`` of ``cls`` (raising a SchemaError that names the field)."""
    dec = _DECODERS.get(cls)
    if dec is not None:
        return dec
    specs = fields_of(cls)
    defaults = _defaults(cls)
    ns: dict[str, Any] = {"SchemaError": SchemaError, "MISSING": _MISSING, "cls": cls, "new": object.__new__}
    by_slots = _slots_settable(cls)
    lines = ["def decode(raw):",
             "    if type(raw) is not dict:",
             "        raise SchemaError(f'expected a map, got {type(raw).__name__}')",
             "    get = raw.get"]
    if by_slots:
        lines.append("    o = new(cls)")
    rules = {f.name: check_of(f) for f in dataclasses.fields(cls)}
    for i, f in enumerate(specs):
        ns[f"check{i}"] = _slow_check(f, defaults[f.name])
        lines.append(f"    v = get({f.name!r}, MISSING)")
        if f.decode is not None or object in f.kinds:
            lines.append(f"    if v is MISSING or v is None or {f.decode is not None}:")
        elif len(f.kinds) == 1 or f.kinds == (float, int):
            ns[f"t{i}"] = f.kinds[0]
            lines.append(f"    if type(v) is not t{i}:")
        else:
            ns[f"t{i}"] = f.exact
            lines.append(f"    if type(v) not in t{i}:")
        lines.append(f"        v = check{i}(v)")
        rule = rules[f.name]
        if rule is not None:  # the inline test; the rule's own words only for a value it refuses
            ns[f"rule{i}"] = _value_check(f.name, rule)
            numeric = bool(set(f.kinds) & {int, float})
            lines.append(f"    if v is not None and not ({_accepts(rule, numeric, ns, i)}):")
            lines.append(f"        rule{i}(v)")
        if by_slots:
            ns[f"set{i}"] = _slot(cls, f.name).__set__
            lines.append(f"    set{i}(o, v)")
        else:
            lines.append(f"    v{i} = v")
    if by_slots:
        lines.append("    return o")
    else:
        lines.append("    return cls(" + ", ".join(f"{f.name}=v{i}" for i, f in enumerate(specs)) + ")")
    dec = _DECODERS[cls] = _compile("\n".join(lines), "decode", ns)
    return dec


def encoder(cls: type) -> Any:
    """The compiled ``record -> plain map`` of ``cls`` (nested records as maps too)."""
    enc = _ENCODERS.get(cls)
    if enc is not None:
        return enc
    specs = fields_of(cls)
    ns: dict[str, Any] = {}
    items = []
    for i, f in enumerate(specs):
        if f.encode is None:
            items.append(f"{f.name!r}: r.{f.name}")
        else:
            ns[f"enc{i}"] = f.encode
            items.append(f"{f.name!r}: None if (x{i} := r.{f.name}) is None else enc{i}(x{i})")
    source = "def encode(r):\n    return {" + ", ".join(items) + "}"
    enc = _ENCODERS[cls] = _compile(source, "encode", ns)
    return enc


def maker(cls: type) -> Any:
    """A positional constructor of a frozen slots dataclass that sets its slots directly (for the wire's own hot
    small records: envelopes, replies); ``cls`` itself when that is not possible."""
    if not _slots_settable(cls):
        return cls
    names = [f.name for f in dataclasses.fields(cls)]
    ns: dict[str, Any] = {"cls": cls, "new": object.__new__}
    lines = [f"def make({', '.join(names)}):", "    o = new(cls)"]
    for i, name in enumerate(names):
        ns[f"set{i}"] = _slot(cls, name).__set__
        lines.append(f"    set{i}(o, {name})")
    lines.append("    return o")
    return _compile("\n".join(lines), "make", ns)


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
        if cls is None and type(value) is str:  # a numbered program (preditor-1) is of its kind (common/programs.py)
            cls = self.records.get(kind_of(value))
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
    dec = _DECODERS.get(cls) if type(cls) is not OneOf else None
    if dec is None:
        if type(cls) is OneOf:
            cls = cls.pick(raw)
        dec = decoder(cls)
    return dec(raw)


def to_wire(record: Any) -> Any:
    """A record as a plain map, nested records as maps too (non-dataclass values pass through)."""
    enc = _ENCODERS.get(type(record))
    if enc is not None:
        return enc(record)
    if not dataclasses.is_dataclass(record) or isinstance(record, type):
        return record
    return encoder(type(record))(record)
