"""The persistence service's pure rules (writes, stream_events, sessions): tables of inputs and what they become."""

from __future__ import annotations

import uuid

import pytest

from common import config
from common.records.schema import Trade
from services.persistence import sessions, stream_events, writes
from services.persistence.sessions import EndReason
from services.persistence.sinks.factory import SinksConfig

T = 1_780_000_000.0


def test_prepare_fills_missing_session_and_keeps_a_stored_one():
    rid_new, rid_old = str(uuid.uuid4()), str(uuid.uuid4())
    base = {"timestamp": "2026-01-01T00:00:00Z", "symbol": "EURUSD", "direction": 1, "action": "CLOSE"}
    stored = {rid_old: "oldsess1"}
    out = writes.prepare_writes("trades", [{**base, "id": rid_new, "session_id": ""}, {**base, "id": rid_old},
                                           {**base, "id": "x", "session_id": "given"}],
                                session_id="cur00001", stored_session=stored.get)
    got = {rid: r.session_id for rid, _, r in out.valid}
    assert got == {rid_new: "cur00001", rid_old: "oldsess1"}
    assert "trades.id" in out.rejected["x"]
    # without the lookup (the service's way): the current session, and the positions the store may change back
    given = {**base, "id": str(uuid.uuid4()), "session_id": "given"}
    out = writes.prepare_writes("trades", [{**base, "id": rid_old}, given, {**base, "id": rid_new}],
                                session_id="cur00001")
    assert [r.session_id for _, _, r in out.valid] == ["cur00001", "given", "cur00001"]
    assert out.session_filled == {0, 2}


@pytest.mark.parametrize("table, session, want", [
    ("trades", None, ""),  # no session yet: empty, adopted by the session when it starts
    ("events", None, None),
    ("events", "cur00001", "cur00001"),
])
def test_prepare_without_a_session(table, session, want):
    rec = ({"id": str(uuid.uuid4()), "timestamp": "2026-01-01T00:00:00Z", "symbol": "EURUSD", "direction": 1,
            "action": "OPEN"} if table == "trades" else
           {"id": str(uuid.uuid4()), "timestamp": "2026-01-01T00:00:00Z", "event_type": "X"})
    out = writes.prepare_writes(table, [rec], session_id=session, stored_session=lambda _i: None)
    assert out.valid[0][2].session_id == want


@pytest.mark.parametrize("records, key, reason", [
    ([{"timestamp": "x"}], "<record 0 without an id>", "id"),
    (["not a map"], "<record 0 without an id>", "expected a map"),
])
def test_prepare_rejects_with_reasons(records, key, reason):
    out = writes.prepare_writes("events", records, session_id=None, stored_session=lambda _i: None)
    assert reason in out.rejected[key] and not out.valid


def _trade(action: str, pnl: float, pos: str) -> Trade:
    return Trade(id=uuid.uuid4(), session_id="s", timestamp=stream_events.utc(T), symbol="EURUSD", direction=1,
                 action=action, pnl=pnl, position_id=pos)


def test_session_totals_count_positions_closed():
    got = sessions.session_totals([_trade("OPEN", -0.7, "1"), _trade("PARTIAL_CLOSE", 5.0, "1"),
                                 _trade("CLOSE", 4.0, "1"), _trade("OPEN", 0.0, "2"), _trade("CLOSE", -3.0, "2")])
    assert got == sessions.Totals(trades=2, closing_deals=3, pnl=5.3)


@pytest.mark.parametrize("asked, stop, before, want", [
    ("EMERGENCY", "MANUAL", "RUNNING", EndReason.EMERGENCY),
    (None, "MANUAL", "RUNNING", EndReason.MANUAL),
    (None, "MANUAL", "HALTED", EndReason.EMERGENCY),
    (None, "", "RUNNING", EndReason.NORMAL),
    ("bogus", "whatever", "DEGRADED", EndReason.NORMAL),
    ("manual", "", "", EndReason.MANUAL),
])
def test_end_reason(asked, stop, before, want):
    assert sessions.end_reason(asked, stop, before) is want


@pytest.mark.parametrize("text, want", [("stopping MANUAL", "MANUAL"), ("stopping", None), ("go x", None)])
def test_stop_reason_of(text, want):
    assert sessions.stop_reason_of(text) == want


@pytest.mark.parametrize("where, ok", [
    ({"session_id": "s", "is_paper": True}, True),
    ({"since": "2026-01-01T00:00:00Z", "until": T}, True),
    ({"since": "2026-01-01T00:00:00"}, False),  # naive
    ({"is_paper": "yes"}, False),
    ({"colour": "red"}, False),
])
def test_query_filters(where, ok):
    if ok:
        assert set(writes.query_filters(where)) == set(where)
    else:
        with pytest.raises(ValueError, match="where."):
            writes.query_filters(where)


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
    a = stream_events.alert_event("orchestrator", 7, 1, 1_000_000_000, alert, None, "alert.watchdog")
    b = stream_events.alert_event("orchestrator", 7, 1, 1_000_000_000, alert, None, "alert.halted")
    assert a.id != b.id
