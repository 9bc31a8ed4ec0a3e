"""The schema machinery: nested records, path-named errors, and every op's result on the wire."""

from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest
import status_samples

from common import messages, schema, wire


@dataclass(frozen=True, slots=True)
class Leg:
    price: float
    lots: float = 0.0


@dataclass(frozen=True, slots=True)
class Book:
    name: str
    best: Leg
    legs: list[Leg]
    by_id: dict[str, Leg] = field(default_factory=dict)
    spare: Leg | None = None


BOOK = Book("b", Leg(1.5), [Leg(1.0, 2.0), Leg(2.0)], {"x": Leg(3.0, 1.0)})


def test_nested_records_round_trip_as_plain_maps():
    raw = schema.to_wire(BOOK)
    assert raw == {"name": "b", "best": {"price": 1.5, "lots": 0.0},
                   "legs": [{"price": 1.0, "lots": 2.0}, {"price": 2.0, "lots": 0.0}],
                   "by_id": {"x": {"price": 3.0, "lots": 1.0}}, "spare": None}
    assert schema.from_wire(Book, msgpack.unpackb(msgpack.packb(raw))) == BOOK


@pytest.mark.parametrize("change, error", [
    ({"legs": [{"price": 1.0}, {"price": "2"}]}, "legs[1].price: expected float, got str"),
    ({"legs": [{"price": 1.0}, {"lots": 1.0}]}, "legs[1].price: missing"),
    ({"legs": [{"price": 1.0}, 7]}, "legs[1]: expected a map, got int"),
    ({"legs": {"price": 1.0}}, "legs: expected a list, got dict"),
    ({"best": None}, "best: expected Leg, got null"),
    ({"best": [1.0]}, "best: expected a map, got list"),
    ({"best": {"price": True}}, "best.price: expected float, got bool"),
    ({"by_id": {"x": {"price": None}}}, "by_id[x].price: expected float, got null"),
    ({"by_id": {1: {"price": 1.0}}}, "by_id: expected str keys, got int"),
    ({"spare": {"lots": 1.0}}, "spare.price: missing"),
    ({"name": 3}, "name: expected str, got int"),
])
def test_a_malformed_nested_map_names_the_path(change, error):
    raw = {**schema.to_wire(BOOK), **change}
    with pytest.raises(schema.SchemaError) as exc:
        schema.from_wire(Book, raw)
    assert str(exc.value) == error


def test_an_optional_nested_record_may_be_null_or_absent():
    raw = schema.to_wire(BOOK)
    assert schema.from_wire(Book, {**raw, "spare": {"price": 9.0}}).spare == Leg(9.0)
    del raw["spare"], raw["by_id"]
    assert schema.from_wire(Book, raw) == Book("b", Leg(1.5), [Leg(1.0, 2.0), Leg(2.0)])


def flat_sample(cls: type) -> dict:
    """Values for every flat field of ``cls``."""
    values = {int: 1, float: 1.5, str: "s", bool: True, dict: {"k": 1}, list: [1]}
    raw = {}
    for f in schema.fields_of(cls):
        if f.decode is None:
            raw[f.name] = values[next(k for k in f.kinds if k in values)]
    return raw


def test_every_op_result_is_a_record_and_round_trips_over_the_wire():
    untyped = {name for name, spec in messages.OPS.items() if spec.result is None}
    assert untyped == set()  # every op answers a record (status and command: one per service / command, OneOf)
    position = messages.Position(7, "EURUSD", -1, 0.03, 1.1, 1.0, label="c1")
    account = messages.AccountInfo(1000.0, 990.0, 10.0, 980.0, 9900.0, "USD", 30.0)
    results = {
        "ping": messages.Pong("executor", 3),
        "stop": messages.Stopping(messages.STOPPING, ["executor:executor.stop"]),
        "clear_halt": messages.HaltCleared(messages.RUNNING, "EMERGENCY_DD"),
        "subscribe": messages.Subscribed("EURUSD", "H1", True, resumed_after=3600),
        "symbol_info": messages.SymbolInfo(**flat_sample(messages.SymbolInfo)),
        "account": account,
        "positions": messages.Positions([position], account, {"EURUSD": messages.BookQuote(1.1, 1.1002, 1.0)},
                                        {"EURUSD": messages.MarketClosed(5.0)}, 12.0),
        "last_signals": messages.LastSignals({"EURUSD": messages.Signal("EURUSD", 3600, 1.1, 1, 1, 2, 0, 0.5)}),
        "virtual_positions": messages.VirtualPositions(
            {"EURUSD": messages.VirtualPosition("EURUSD", "H1", 1, 2, 1.1, 3600, 0.5, 1.0, 7200, 3)}),
        "query": messages.QueryResult("trades", [{"id": "a"}], 1),
    }
    typed = {name for name, spec in messages.OPS.items() if spec.result is not None}
    assert set(results) <= typed
    for op, result in results.items():
        assert isinstance(result, messages.OPS[op].result)
        reply = wire.decode_reply([wire.encode_reply("r", result)], op)
        assert reply.result == result, op


def command_results() -> list:
    """A sample of each executor command's result record, nested records filled."""
    ack = messages.Ack("EURUSD", 0, "FAIL", "MARKET_CLOSED", {"ticket": 7, "due_at_open": True})
    state = messages.TradingState(
        "executor_status", paused=False, halted=True, halt_reason="EMERGENCY_DD", consecutive_losses=2,
        cooldown_until=None, positions=[messages.TradingPosition(7, "EURUSD", -1, 0.03, "c1")], orphans=["GBPUSD"],
        modelled=["EURUSD"],
        symbols={"EURUSD": messages.TradingSymbol(True, [0.01, 0.03, 0.05], 10.0, 0.0, 2.0, "refuse", True, "SYNCED")},
        risk=messages.RiskStatus(1000.0, 1010.0, 990.0, 2, None, True, "EMERGENCY_DD", ["7"]), synced=True,
        connected=True, due_closes=[messages.DueAtOpen(7, "EURUSD", 0.03, "cid", "MANUAL_CLOSE", "MANUAL_CLOSE", None,
                                                       5.0, "WAITING")],
        markets={"EURUSD": messages.MarketState("EURUSD", False, 5.0, "MARKET_CLOSED")}, closed_markets=["EURUSD"],
        last_bar_time={"EURUSD": 3600}, pending_signals=["EURUSD"])
    return [
        messages.Paused("pause", True, False), messages.Resumed("resume", False, True),
        messages.Closing("close", [7], "EURUSD", [ack]), messages.Closing("close_all", [], acks=[]),
        messages.HaltReset("reset_halt", False, "EMERGENCY_DD"), messages.LossesReset("reset_losses", 0),
        messages.SymbolConfigSet("set_symbol_config", "EURUSD", {"enabled": True, "sl_usd": 10.0}),
        messages.RiskConfigSet("set_risk_config", {"dd_limit_pct": 5.0}), state,
    ]


def test_every_command_result_round_trips_over_the_wire_as_its_own_record():
    samples = command_results()
    assert {r.command for r in samples} == set(messages.COMMAND_RESULTS.records)
    for result in samples:
        assert type(result) is messages.COMMAND_RESULTS.records[result.command]
        reply = wire.decode_reply([wire.encode_reply("r", result)], "command")
        assert reply.result == result, result.command


def _command_reply(raw: dict) -> list[bytes]:
    return [msgpack.packb({"v": wire.WIRE_VERSION, "id": "r", "ok": True, "result": raw})]


@pytest.mark.parametrize("change, error", [
    ({"paused": "no"}, "command result: paused: expected bool, got str"),
    ({"positions": [{"ticket": "7", "symbol": "EURUSD", "direction": -1, "lots": 0.03}]},
     "command result: positions[0].ticket: expected int, got str"),
    ({"symbols": {"EURUSD": {"enabled": True}}}, "command result: symbols[EURUSD].lots: missing"),
    ({"command": "reboot"}, "command result: command: expected one of close, close_all, executor_status, pause, "
                            "reset_halt, reset_losses, resume, set_risk_config, set_symbol_config, got 'reboot'"),
])
def test_a_command_reply_with_a_wrong_field_is_a_wire_error_naming_the_field(change, error):
    raw = {**messages.to_wire(command_results()[-1]), **change}
    with pytest.raises(wire.WireError) as exc:
        wire.decode_reply(_command_reply(raw), "command")
    assert exc.value.code == wire.BAD_BODY
    assert exc.value.message == error


def test_a_close_reply_with_a_malformed_ack_names_the_ack_field():
    raw = messages.to_wire(messages.Closing("close", [7], "EURUSD", [messages.Ack("EURUSD", 0, "OK")]))
    raw["acks"][0]["bar_time"] = None
    with pytest.raises(wire.WireError) as exc:
        wire.decode_reply(_command_reply(raw), "command")
    assert exc.value.message == "command result: acks[0].bar_time: expected int, got null"


def test_a_malformed_result_is_a_wire_error_naming_the_op_and_the_field():
    raw = {"signals": {"EURUSD": {**messages.to_wire(messages.Signal("EURUSD", 3600, 1.1, 1, 1, 2, 0, 0.5)),
                                  "bar_time": "3600"}}}
    frame = msgpack.packb({"v": wire.WIRE_VERSION, "id": "r", "ok": True, "result": raw})
    with pytest.raises(wire.WireError) as exc:
        wire.decode_reply([frame], "last_signals")
    assert exc.value.code == wire.BAD_BODY
    assert exc.value.message == "last_signals result: signals[EURUSD].bar_time: expected int, got str"


@pytest.mark.parametrize("service, report", status_samples.every_service().items())
def test_a_status_report_of_each_service_round_trips_over_the_wire(service, report):
    reply = wire.decode_reply([wire.encode_reply("r", report)], "status")
    assert type(reply.result) is type(report) and reply.result == report, service


def test_a_status_report_is_one_flat_map_the_common_part_beside_the_services_own_fields():
    raw = messages.to_wire(status_samples.executor())
    assert raw["service"] == "executor" and raw["paused"] is False and raw["connected"] is None
    assert raw["outbox"] == {"pending": 1, "acked": 9, "rejected": 0}
    assert raw["positions"] == [{"ticket": 7, "symbol": "EURUSD", "direction": 1, "lots": 0.03, "label": "c1"}]


def _without(raw: dict, key: str) -> dict:
    return {k: v for k, v in raw.items() if k != key}


@pytest.mark.parametrize("service, change, error", [
    ("paper", lambda r: _without(r, "restored"), "restored: missing"),
    ("connector", lambda r: _without(r, "outbox"), "outbox: missing"),
    ("executor", lambda r: {**r, "positions": [{**r["positions"][0], "lots": "0.03"}]},
     "positions[0].lots: expected float, got str"),
    ("orchestrator", lambda r: {**r, "services": {"persistence": {**r["services"]["persistence"], "restarts": "1"}}},
     "services[persistence].restarts: expected int, got str"),
    ("preditor", lambda r: {**r, "models": {"EURUSD": _without(r["models"]["EURUSD"], "warm")}},
     "models[EURUSD].warm: missing"),
    ("persistence", lambda r: {**r, "store": {**r["store"], "open": 1}}, "store.open: expected bool, got int"),
    ("sender", lambda r: {**r, "uptime_s": "12"}, "uptime_s: expected float, got str"),
])
def test_a_status_report_missing_a_field_or_of_a_wrong_type_is_a_wire_error_naming_it(service, change, error):
    raw = change(messages.to_wire(status_samples.every_service()[service]))
    frame = msgpack.packb({"v": wire.WIRE_VERSION, "id": "r", "ok": True, "result": raw})
    with pytest.raises(wire.WireError) as exc:
        wire.decode_reply([frame], "status")
    assert exc.value.code == wire.BAD_BODY
    assert exc.value.message == f"status result: {error}"


def test_a_status_record_is_not_made_without_a_field_nor_with_an_unknown_one():
    with pytest.raises(TypeError, match="accounts"):
        messages.PaperStatus(**status_samples.common_part("paper"), restored=True, state_file="s", journal="j",
                             unsaved=0)
    with pytest.raises(TypeError, match="acounts"):
        messages.ProcessStatus(**status_samples.common_part("sender"), acounts={})


class Name(str):
    pass


@dataclass(frozen=True, slots=True)
class Tagged:
    name: str
    count: int
    tags: list = field(default_factory=list)
    note: str | None = "n"
    anything: Any = None


def test_a_compiled_decoder_keeps_every_rule_of_the_spec():
    record = schema.from_wire(Tagged, {"name": Name("a"), "count": 2})
    assert record == Tagged("a", 2) and type(record.name) is Name  # a subclass passes, as with isinstance
    assert record.tags == [] and schema.from_wire(Tagged, {"name": "a", "count": 2}).tags is not record.tags
    assert schema.from_wire(Tagged, {"name": "a", "count": 2, "note": None, "anything": [1]}).anything == [1]
    for raw, error in [
        ({"count": 2}, "name: missing"),
        ({"name": "a", "count": True}, "count: expected int, got bool"),
        ({"name": "a", "count": 2.0}, "count: expected int, got float"),
        ({"name": "a", "count": None}, "count: expected int, got null"),
        ({"name": "a", "count": 1, "tags": {}}, "tags: expected list, got dict"),
        ({"name": "a", "count": 1, "note": 5}, "note: expected str, got int"),
    ]:
        with pytest.raises(schema.SchemaError) as exc:
            schema.from_wire(Tagged, raw)
        assert str(exc.value) == error


@dataclass(frozen=True)
class Checked:
    """Not slots, and a __post_init__ of its own: built by its __init__, so the check runs."""

    lots: float

    def __post_init__(self):
        if self.lots < 0:
            raise ValueError("negative lots")


def test_a_record_with_a_post_init_or_without_slots_is_built_by_its_init():
    assert schema.from_wire(Checked, {"lots": 0.5}) == Checked(0.5)
    with pytest.raises(ValueError, match="negative lots"):
        schema.from_wire(Checked, {"lots": -1.0})
    assert schema.to_wire(Checked(0.5)) == {"lots": 0.5}
