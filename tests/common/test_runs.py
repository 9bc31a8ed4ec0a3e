"""The run messages (``BarRun``, ``SignalRun``: the replay form, one message per run of bars at each hop) are
validated and bounded on decode, and the connector forms them only from bars of one stream that follow each other in
a drain (``events_out.as_runs``): a lone bar stays a ``Bar``, the order of everything said is kept."""

from __future__ import annotations

import pytest

from common import messages, wire
from common.schema import SchemaError
from services.connector.events_out import as_runs


def bar(t: int, symbol: str = "EURUSD", tf: str = "H1") -> messages.Bar:
    return messages.Bar(symbol, tf, t, 1.1, 1.2, 1.0, 1.15, 100.0)


def signal(t: int, symbol: str = "EURUSD") -> messages.Signal:
    return messages.Signal(symbol, t, 1.15, 1, 1, 1, 0, 0.5)


def round_trip(topic: str, record) -> messages.BarRun | messages.SignalRun:
    return wire.decode_pub(wire.encode_pub(topic, "connector", 1, 1, 0, record)).body


def test_a_run_crosses_the_wire_as_it_was():
    run = messages.BarRun("EURUSD", "H1", [bar(3600 * i) for i in range(1, 4)])
    assert round_trip(messages.bars_topic("EURUSD", "H1"), run) == run
    sigs = messages.SignalRun("EURUSD", [signal(3600 * i) for i in range(1, 4)])
    assert round_trip(messages.signals_topic("EURUSD"), sigs) == sigs


@pytest.mark.parametrize("raw, named", [
    ({"symbol": "EURUSD", "timeframe": "H1", "bars": []}, "at least one"),
    ({"symbol": "EURUSD", "timeframe": "H1", "bars": [bar(7200), bar(3600)]}, "bars[1]"),
    ({"symbol": "EURUSD", "timeframe": "H1", "bars": [bar(3600), bar(3600)]}, "not after"),
    ({"symbol": "EURUSD", "timeframe": "H1", "bars": [bar(3600), bar(7200, "GBPUSD")]}, "bars[1].symbol"),
    ({"symbol": "EURUSD", "timeframe": "H1", "bars": [bar(3600, tf="M15")]}, "bars[0].timeframe"),
    ({"symbol": "EURUSD", "timeframe": "H1", "bars": [bar(3600 * i) for i in range(1, messages.MAX_RUN + 2)]},
     f"at most {messages.MAX_RUN}"),
])
def test_a_bad_bar_run_is_refused_naming_what_is_wrong(raw, named):
    raw = {**raw, "bars": [messages.to_wire(b) for b in raw["bars"]]}
    with pytest.raises(SchemaError, match=named.replace("[", r"\[").replace("]", r"\]")):
        messages.from_wire(messages.BarRun, raw)


def test_a_bad_run_on_the_wire_is_a_wire_error_not_a_crash():
    frames = wire.encode_pub("bars.EURUSD.H1", "connector", 1, 1, 0, messages.BarRun("EURUSD", "H1", [bar(3600)]))
    raw = wire._unpack(frames[1])
    raw["body"]["bars"] = [messages.to_wire(bar(7200)), messages.to_wire(bar(3600))]
    with pytest.raises(wire.WireError, match="not after"):
        wire.decode_pub([frames[0], wire._pack(raw)])


def test_a_bad_signal_run_is_refused_naming_what_is_wrong():
    with pytest.raises(SchemaError, match=r"signals\[1\]"):
        messages.from_wire(messages.SignalRun, {"symbol": "EURUSD", "signals": [
            messages.to_wire(signal(7200)), messages.to_wire(signal(3600))]})
    with pytest.raises(SchemaError, match=r"signals\[0\]\.symbol"):
        messages.from_wire(messages.SignalRun, {"symbol": "EURUSD", "signals": [messages.to_wire(signal(1, "X"))]})


def test_split_run_keeps_the_order_within_the_limit():
    items = list(range(1203))
    parts = messages.split_run(items)
    assert [len(p) for p in parts] == [500, 500, 203] and sum(parts, []) == items
    assert messages.split_run([]) == []
    with pytest.raises(ValueError, match="at least 1"):
        messages.split_run(items, 0)


def test_the_connector_forms_runs_only_from_a_streams_bars_that_follow_each_other():
    topic, other = messages.bar_topic("EURUSD", "H1"), messages.bar_topic("GBPUSD", "H1")
    fill = ("fill.EURUSD", object())
    out = [(topic, bar(3600)), (topic, bar(7200)), (topic, bar(10800)), fill, (topic, bar(14400)),
           (other, bar(14400, "GBPUSD")), (other, bar(18000, "GBPUSD"))]
    said = as_runs(out)
    assert [t for t, _ in said] == [messages.bars_topic("EURUSD", "H1"), "fill.EURUSD", topic,
                                    messages.bars_topic("GBPUSD", "H1")]
    assert [b.time for b in said[0][1].bars] == [3600, 7200, 10800]
    assert said[1] == fill and said[2][1] == bar(14400)  # a lone bar: as on the live path
    assert [b.time for b in said[3][1].bars] == [14400, 18000]


def test_the_live_path_is_unchanged_a_close_of_many_symbols_is_many_bars():
    out = [(messages.bar_topic(s, "H1"), bar(3600, s)) for s in ("EURUSD", "GBPUSD", "USDJPY")]
    assert as_runs(out) == out


def test_a_long_run_is_split_and_a_lone_remainder_is_a_bar():
    topic = messages.bar_topic("EURUSD", "H1")
    out = [(topic, bar(3600 * i)) for i in range(1, messages.MAX_RUN + 2)]
    said = as_runs(out)
    assert len(said) == 2 and len(said[0][1].bars) == messages.MAX_RUN
    assert said[1] == (topic, bar(3600 * (messages.MAX_RUN + 1)))
