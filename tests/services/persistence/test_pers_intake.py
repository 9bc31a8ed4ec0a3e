"""intake: the pure part of the persistence service (tables of inputs and what they become)."""

from __future__ import annotations

import uuid

import pytest

from common import config, messages, order_label
from common.order_label import OrderAction, client_order_id
from services.persistence import intake, trades
from services.persistence.records import Trade
from services.persistence.sessions import EndReason
from services.persistence.sinks.factory import SinksConfig

T = 1_780_000_000.0


def test_prepare_fills_missing_session_and_keeps_a_stored_one():
    rid_new, rid_old = str(uuid.uuid4()), str(uuid.uuid4())
    base = {"timestamp": "2026-01-01T00:00:00Z", "symbol": "EURUSD", "direction": 1, "action": "CLOSE"}
    stored = {rid_old: "oldsess1"}
    out = intake.prepare_writes("trades", [{**base, "id": rid_new, "session_id": ""}, {**base, "id": rid_old},
                                           {**base, "id": "x", "session_id": "given"}],
                                session_id="cur00001", stored_session=stored.get)
    got = {rid: r.session_id for rid, _, r in out.valid}
    assert got == {rid_new: "cur00001", rid_old: "oldsess1"}
    assert "trades.id" in out.rejected["x"]


@pytest.mark.parametrize("table, session, want", [
    ("trades", None, ""),  # no session yet: empty, adopted by the session when it starts
    ("events", None, None),
    ("events", "cur00001", "cur00001"),
])
def test_prepare_without_a_session(table, session, want):
    rec = ({"id": str(uuid.uuid4()), "timestamp": "2026-01-01T00:00:00Z", "symbol": "EURUSD", "direction": 1,
            "action": "OPEN"} if table == "trades" else
           {"id": str(uuid.uuid4()), "timestamp": "2026-01-01T00:00:00Z", "event_type": "X"})
    out = intake.prepare_writes(table, [rec], session_id=session, stored_session=lambda _i: None)
    assert out.valid[0][2].session_id == want


@pytest.mark.parametrize("records, key, reason", [
    ([{"timestamp": "x"}], "<record 0 without an id>", "id"),
    (["not a map"], "<record 0 without an id>", "expected a map"),
])
def test_prepare_rejects_with_reasons(records, key, reason):
    out = intake.prepare_writes("events", records, session_id=None, stored_session=lambda _i: None)
    assert reason in out.rejected[key] and not out.valid


def test_fill_and_close_become_real_trades():
    cid = client_order_id("EURUSD", int(T) - 3600, OrderAction.OPEN)
    f = messages.to_wire(messages.Fill("EURUSD", 7, cid, -1, 0.2, 1.2, T, 99))
    t = trades.real_trade(intake.fill_input(f), session_id="s")
    assert (t.action, t.direction, t.position_id, t.entry_price, t.pnl) == ("OPEN", -1, "7", 1.2, 0.0)
    assert t.bar_time == intake.utc(T - 3600) and t.timestamp == intake.utc(T)
    c = messages.to_wire(messages.PositionClosed(7, "EURUSD", -1, 0.2, 1.2, 1.19, 20.0, -0.5, -1.4, 18.1, T + 60,
                                                 "SL_TP", True, 10_018.1, cid, False))
    ct = trades.real_trade(intake.closed_input(c), session_id="s")
    assert ct.action == "PARTIAL_CLOSE" and ct.pnl == pytest.approx(18.1) and ct.commission == 1.4
    assert ct.comment == "SL_TP external" and ct.bar_time is None
    assert ct.id == trades.real_trade(intake.closed_input(c), session_id="s").id  # the same deal, the same id
    assert intake.bar_time_of("someone-else's") is None and intake.bar_time_of("") is None


def test_a_real_trade_carries_the_signal_facts_of_its_orders_comment():
    cid = client_order_id("EURUSD", int(T) - 3600, OrderAction.OPEN)
    ours = order_label.encode(order_label.OrderLabel(cid, hmm_state=3, action_index=2, intensity=2, balance=10_000))
    f = messages.to_wire(messages.Fill("EURUSD", 7, cid, 1, 0.2, 1.2, T, 99, ours))
    t = trades.real_trade(intake.fill_input(f), session_id="s")
    assert (t.intensity, t.hmm_state, t.comment) == (2, 3, ours)
    c = messages.to_wire(messages.PositionClosed(7, "EURUSD", 1, 0.2, 1.2, 1.19, -20.0, -0.5, -1.4, -21.9, T + 60,
                                                 "CLOSE", False, 9_978.1, cid, True, ours, 0.0001))
    ct = trades.real_trade(intake.closed_input(c), session_id="s")
    assert (ct.intensity, ct.hmm_state, ct.comment) == (2, 3, "CLOSE")  # a close's comment says why it closed
    assert ct.pnl_pips == pytest.approx(-100.0)  # long from 1.2 out at 1.19, in the symbol's pips
    # an opening whose fill never reached us, recorded from the broker's open position: the same facts
    position = {"ticket": 7, "symbol": "EURUSD", "direction": 1, "volume": 0.2, "open_time": T, "open_price": 1.2,
                "label": cid, "comment": ours}
    rt = trades.real_trade(intake.recovered_open_input(position), session_id="s")
    assert (rt.intensity, rt.hmm_state, rt.comment) == (2, 3, intake.RECOVERED_OPEN_COMMENT)
    # someone else's comment, or one of ours that does not parse: the facts are unknown, the record is still made
    for other in ("placed by hand", "OT1|broken", ""):
        t = trades.real_trade(intake.fill_input({**f, "comment": other}), session_id="s")
        assert (t.intensity, t.hmm_state, t.comment) == (0, None, other or None)


def test_the_connectors_outbox_copy_of_a_deal_is_the_streams_record():
    cid = client_order_id("EURUSD", int(T) - 3600, OrderAction.OPEN)
    fill = messages.to_wire(messages.Fill("EURUSD", 7, cid, 1, 0.2, 1.2, T, 99))
    closed = messages.to_wire(messages.PositionClosed(7, "EURUSD", 1, 0.2, 1.2, 1.19, -20.0, -0.5, -1.4, -21.9,
                                                      T + 60, "CLOSE", False, 9_978.1, cid, True))
    for body, closing, made in ((fill, False, intake.fill_input), (closed, True, intake.closed_input)):
        sent = intake.real_trade_record(body, closing)
        assert sent["session_id"] == ""  # the store fills it in: the stream's copy then is a duplicate
        prepared = intake.prepare_writes("trades", [sent], session_id="cur00001", stored_session=lambda _: None)
        assert not prepared.rejected
        (_, _, written), = prepared.valid
        assert written == trades.real_trade(made(body), session_id="cur00001")


def _trade(action: str, pnl: float, pos: str) -> Trade:
    return Trade(id=uuid.uuid4(), session_id="s", timestamp=intake.utc(T), symbol="EURUSD", direction=1,
                 action=action, pnl=pnl, position_id=pos)


def test_session_totals_count_positions_closed():
    got = intake.session_totals([_trade("OPEN", -0.7, "1"), _trade("PARTIAL_CLOSE", 5.0, "1"),
                                 _trade("CLOSE", 4.0, "1"), _trade("OPEN", 0.0, "2"), _trade("CLOSE", -3.0, "2")])
    assert got == intake.Totals(trades=2, closing_deals=3, pnl=5.3)


@pytest.mark.parametrize("asked, stop, before, want", [
    ("EMERGENCY", "MANUAL", "RUNNING", EndReason.EMERGENCY),
    (None, "MANUAL", "RUNNING", EndReason.MANUAL),
    (None, "MANUAL", "HALTED", EndReason.EMERGENCY),
    (None, "", "RUNNING", EndReason.NORMAL),
    ("bogus", "whatever", "DEGRADED", EndReason.NORMAL),
    ("manual", "", "", EndReason.MANUAL),
])
def test_end_reason(asked, stop, before, want):
    assert intake.end_reason(asked, stop, before) is want


@pytest.mark.parametrize("text, want", [("stopping MANUAL", "MANUAL"), ("stopping", None), ("go x", None)])
def test_stop_reason_of(text, want):
    assert intake.stop_reason_of(text) == want


@pytest.mark.parametrize("where, ok", [
    ({"session_id": "s", "is_paper": True}, True),
    ({"since": "2026-01-01T00:00:00Z", "until": T}, True),
    ({"since": "2026-01-01T00:00:00"}, False),  # naive
    ({"is_paper": "yes"}, False),
    ({"colour": "red"}, False),
])
def test_query_filters(where, ok):
    if ok:
        assert set(intake.query_filters(where)) == set(where)
    else:
        with pytest.raises(ValueError, match="where."):
            intake.query_filters(where)


def test_config_sinks_section_is_what_the_factory_validates():
    cfg = config.load()
    assert SinksConfig.model_validate(cfg.persistence.sinks.model_dump()).model_dump() == \
        cfg.persistence.sinks.model_dump()
    for name, model in SinksConfig.model_fields.items():
        ours = type(getattr(cfg.persistence.sinks, name)).model_fields
        assert set(ours) == set(model.annotation.model_fields), name


def test_alerts_on_different_topics_with_the_same_seq_get_different_ids():
    # seq counts per publisher and topic: alert.watchdog #1 and alert.halted #1 are two different messages
    alert = {"kind": "k", "severity": "warning", "message": "m", "service": "orchestrator", "details": {}}
    a = intake.alert_event("orchestrator", 7, 1, 1_000_000_000, alert, None, "alert.watchdog")
    b = intake.alert_event("orchestrator", 7, 1, 1_000_000_000, alert, None, "alert.halted")
    assert a.id != b.id
