"""The executor's state file: version 2 round trip, and a version-1 file (protocol volumes) read and converted."""

import json

import pytest

from common import messages
from services.executor.due_closes import DueClose, DueCloses, DueState
from services.executor.risk import halt, on_close, start_session
from services.executor.state_file import STATE_VERSION, ExecutorState, StateFileError, from_json, to_json
from services.executor.state_v1 import LegacyIntentError, intent_from_v1, intent_symbols
from services.executor.symbols_config import RiskConfig
from services.executor.sync import Direction, Stance

SIG = messages.to_wire(messages.Signal("EURUSD", 7200, 1.1, 1, 1, 1, 3, 0.0))
RISK = on_close(halt(start_session(10_000.0, 10_050.0), "EMERGENCY_DD"), -5.0, 1.0, RiskConfig(), close_id="9")

# written by the version-1 executor (services/executor/service.py before lots): volumes in cents of a unit,
# relative stops in 1/100000 of a price
V1_FILE = {
    "version": 1, "paused": True, "risk": RISK.to_dict(),
    "last": {"EURUSD": {"bar_time": 7200, "direction": 1, "intensity": 1}},
    "acks": [{"id": "4b0f6c1e-0000-5000-8000-000000000001", "symbol": "EURUSD", "decision": "OPEN",
              "status": "OK", "volume": 100000.0, "reason": "EDGE"}],
    "intents": [
        {"signal": SIG, "action": "OPEN", "reason": "EDGE", "allow_open": True, "closes": [],
         "open": {"symbol": "EURUSD", "direction": 1, "volume": 100000, "relative_stop_loss": 1000,
                  "relative_take_profit": 1500, "label": "OT1|EURUSD-5k0-O|3|1|1|10000|0.0|0.00|0.8|",
                  "client_order_id": "EURUSD-5k0-O"},
         "ack": None},
        {"signal": {**SIG, "symbol": "USDJPY"}, "action": "CLOSE", "reason": "SIGNAL_WAIT", "allow_open": True,
         "closes": [{"ticket": 12, "symbol": "USDJPY", "volume": 300000, "client_order_id": "USDJPY-5k0-Cc",
                     "reason": "SIGNAL_WAIT", "direction": -1}],
         "open": None, "ack": None},
    ],
}


def test_version_2_round_trip():
    due = DueCloses((DueClose(12, "USDJPY", 0.03, "USDJPY-5k0-Cc", "SIGNAL_WAIT", "CLOSE", 7200, 5.0,
                              DueState.SENT, 1),))
    state = ExecutorState(paused=True, risk=RISK, last={"EURUSD": (Stance(Direction.LONG, 2), 7200)},
                          ack_records=[{"id": "a"}], intents=[{"signal": SIG}], v1_intents=[{"old": 1}], due=due)
    raw = json.loads(json.dumps(to_json(state)))
    assert raw["version"] == STATE_VERSION == 2
    back, notes = from_json(raw)
    assert back == state and notes == []


def test_version_1_is_read_and_converted():
    state, notes = from_json(json.loads(json.dumps(V1_FILE)))
    assert state.paused is True and state.risk == RISK  # the halt and the loss streak survive the upgrade
    assert state.last == {"EURUSD": (Stance(Direction.LONG, 1), 7200)}
    assert state.ack_records == V1_FILE["acks"]  # handed to persistence again as written (the same record)
    assert state.intents == [] and state.v1_intents == V1_FILE["intents"]  # converted when carried out
    assert state.due == DueCloses()
    assert any("version 1 state converted" in n for n in notes)
    assert any("2 orders written ahead" in n for n in notes)
    assert any("1 ack records" in n for n in notes)
    # written back as version 2, the unconverted intents are still there
    again, _ = from_json(to_json(state))
    assert again.v1_intents == V1_FILE["intents"] and to_json(again)["version"] == 2


def test_the_oldest_single_intent_form_is_read_too():
    old = {**V1_FILE, "intents": None, "intent": V1_FILE["intents"][0]}
    del old["intents"]
    state, _ = from_json(old)
    assert state.v1_intents == [V1_FILE["intents"][0]]


@pytest.mark.parametrize("data,message", [
    ({"version": 3}, "version 3"),
    ({"paused": False}, "version None"),
    ([1, 2], "not a JSON object"),
])
def test_unknown_files_are_refused_by_name(data, message):
    with pytest.raises(StateFileError, match=message):
        from_json(data)


def test_unreadable_parts_are_reported_not_dropped_silently():
    raw = {**to_json(ExecutorState()), "risk": {"nonsense": 1}, "last": {"EURUSD": {"direction": 5}},
           "intents": [{"signal": SIG}, "garbage"], "due_closes": [{"ticket": 1}]}
    state, notes = from_json(raw)
    assert state.intents == [{"signal": SIG}]
    assert len(notes) == 4 and any("risk state unreadable" in n for n in notes)
    assert any("EURUSD" in n for n in notes) and any("garbage" in n for n in notes)
    assert any("unreadable due close" in n for n in notes)


def test_v1_intents_become_lots_and_distances():
    sizes = {"EURUSD": 100_000.0, "USDJPY": 100_000.0}
    assert intent_symbols(V1_FILE["intents"][0]) == {"EURUSD"}
    opening = intent_from_v1(V1_FILE["intents"][0], sizes)
    assert opening["open"] == {"symbol": "EURUSD", "direction": 1, "lots": 0.01, "sl_distance": 0.01,
                               "tp_distance": 0.015, "label": V1_FILE["intents"][0]["open"]["label"],
                               "client_order_id": "EURUSD-5k0-O", "requested_lots": None, "off_step": None}
    assert (opening["signal"], opening["action"], opening["closes"]) == (SIG, "OPEN", [])
    closing = intent_from_v1(V1_FILE["intents"][1], sizes)
    assert closing["closes"] == [{"ticket": 12, "symbol": "USDJPY", "lots": 0.03, "client_order_id": "USDJPY-5k0-Cc",
                                  "reason": "SIGNAL_WAIT", "direction": -1}]
    gold = {**V1_FILE["intents"][0], "open": {**V1_FILE["intents"][0]["open"], "symbol": "XAUUSD", "volume": 500,
                                              "relative_stop_loss": 140_000, "relative_take_profit": 0}}
    converted = intent_from_v1(gold, {"XAUUSD": 100.0})["open"]
    assert (converted["lots"], converted["sl_distance"], converted["tp_distance"]) == (0.05, 1.4, None)


@pytest.mark.parametrize("intent,sizes,message", [
    (V1_FILE["intents"][0], {}, "no contract size for 'EURUSD'"),
    (V1_FILE["intents"][1], {"USDJPY": None}, "no contract size for 'USDJPY'"),
    ({**V1_FILE["intents"][0], "open": {**V1_FILE["intents"][0]["open"], "volume": 0}}, {"EURUSD": 100_000.0},
     "volume 0"),
    ({"closes": []}, {}, "malformed"),
])
def test_v1_intents_that_cannot_be_converted_say_why(intent, sizes, message):
    with pytest.raises(LegacyIntentError, match=message):
        intent_from_v1(intent, sizes)
