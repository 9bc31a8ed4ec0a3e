"""The notifier's pure parts (notices.py: what is a notice and its id, folding, the rate limit, the backoff), its
durable record (store.py, a real SQLite file reopened as after a crash), its sinks' requests and the environment
check of its configuration."""

from __future__ import annotations

import json

import pytest

from common import config, messages, wire
from services.notifier import notices as nt
from services.notifier.sinks import SinkError, request_for, sink_from
from services.notifier.store import NotifierStore

CHOICE = nt.Choice()


def envelope(body, src="orchestrator", topic="alert.halted", epoch=7, seq=1):
    return wire.Envelope(topic, messages.type_name(body), src, epoch, seq, 1_700_000_000_000_000_000, body)


def alert(kind="halted", severity="critical", message="system HALTED: paper: 2 restarts in 60 s"):
    return messages.Alert(kind, severity, message, "orchestrator")


def closed(ticket=42, external=True, time=1_700_000_100.0):
    return messages.PositionClosed(ticket, "EURUSD", 1, 0.01, 1.1, 1.2, 1.0, 0.0, -0.07, 0.93, time,
                                   "EXTERNAL" if external else "CLIENT", external)


def notice(i: int, kind="alert.x", severity="warning") -> nt.Notice:
    return nt.Notice(f"id-{i}", kind, severity, f"{severity.upper()} {kind} #{i}", 1000.0 + i)


# ---- what is a notice ------------------------------------------------------------------------------------------


def test_a_critical_alert_is_a_notice_with_an_id_from_its_publisher_epoch_and_seq():
    a = nt.from_published(envelope(alert()), CHOICE)
    assert a is not None and a.kind == "alert.halted" and a.severity == "critical"
    assert "system HALTED: paper" in a.text and a.time == 1_700_000_000.0
    assert nt.from_published(envelope(alert()), CHOICE).id == a.id  # the same message heard again: the same id
    assert nt.from_published(envelope(alert(), seq=2), CHOICE).id != a.id
    assert nt.from_published(envelope(alert(), epoch=8), CHOICE).id != a.id


def test_info_alerts_and_our_own_closes_are_not_notices_unless_chosen():
    assert nt.from_published(envelope(alert(severity="info")), CHOICE) is None
    assert nt.from_published(envelope(alert(severity="info")), nt.Choice(frozenset({"info"}))) is not None
    assert nt.from_published(envelope(closed(external=False), "connector", "closed.EURUSD"), CHOICE) is None
    assert nt.from_published(envelope(closed(), "connector", "closed.EURUSD"), nt.Choice(external_closes=False)) \
        is None
    assert nt.from_published(envelope(messages.SysState("RUNNING", 0), topic="sys.state"), CHOICE) is None
    # the executor's alert of an external close says what the close's own notice says
    said = alert("external_close", "warning", "EURUSD position 6 closed outside the executor")
    assert nt.from_published(envelope(said, "executor", "alert.external_close"), CHOICE) is None
    assert nt.from_published(envelope(said, "executor", "alert.external_close"),
                             nt.Choice(external_closes=False)) is not None


def test_an_external_close_is_one_notice_whoever_publishes_it_again():
    first = nt.from_published(envelope(closed(), "connector", "closed.EURUSD", epoch=1, seq=5), CHOICE)
    again = nt.from_published(envelope(closed(), "connector", "closed.EURUSD", epoch=2, seq=1), CHOICE)
    assert first is not None and first == again  # a restarted connector reporting it from the deal list
    assert first.kind == "external_close" and "EURUSD #42" in first.text and "+0.93" in first.text


def test_a_sessions_end_from_the_store_is_one_notice_its_summary_or_its_end():
    event = {"id": "9f0c", "session_id": "ab12cd34", "timestamp": "2026-12-07T03:00:00+00:00",
             "event_type": "SESSION_SUMMARY",
             "data": {"reason": "NORMAL", "final_balance": 10012.5, "real": {"trades": 3, "pnl": 12.5},
                      "paper": {"trades": 4, "pnl": 20.0}}}
    n = nt.session_summary(event)
    assert n.kind == "session_summary" and n.time == 1796612400.0
    assert n.text == ("INFO session ab12cd34 ended NORMAL: real 3 trades, PnL +12.50; paper 4 trades, PnL +20.00; "
                      "balance 10012.50")
    ended = {"id": "77aa", "session_id": "ab12cd34", "timestamp": "2026-12-07T03:00:00+00:00",
             "event_type": "SESSION_ENDED",
             "data": {"reason": "DAY_CHANGE", "final_balance": None, "total_trades": 2, "total_pnl": -1.25}}
    e = nt.session_summary(ended)
    assert e.id == n.id  # the same session's end: one notice
    assert e.text == "INFO session ab12cd34 ended DAY_CHANGE: real 2 trades, PnL -1.25; balance unknown"
    assert nt.session_summary({**ended, "session_id": "cd"}).id != n.id


def test_the_ids_are_the_stores_ids_of_the_same_alert_and_close():
    from common.records import real_trades, trades
    from services.persistence import stream_events

    live = nt.from_published(envelope(alert(), "orchestrator", "alert.halted", 7, 3), CHOICE)
    assert live.id == str(stream_events.msg_id("alert", "orchestrator", 7, 3, "alert.halted"))
    c = closed()
    record = trades.real_trade(real_trades.closed_input(messages.to_wire(c)), session_id="s1")
    assert nt.from_published(envelope(c, "connector", "closed.EURUSD"), CHOICE).id == str(record.id)


def test_an_alert_and_an_external_close_read_back_from_the_store_are_the_live_notices():
    from common.records import real_trades, trades
    from common.records import schema as rec
    from services.persistence import stream_events

    body = alert()
    event = rec.to_json(stream_events.alert_event("orchestrator", 7, 3, 1_700_000_000_000_000_000,
                                                  messages.to_wire(body), "s1", "alert.halted"))
    live = nt.from_published(envelope(body, "orchestrator", "alert.halted", 7, 3), CHOICE)
    assert nt.from_alert_event(event, CHOICE) == live
    assert nt.from_alert_event({**event, "severity": "INFO"}, CHOICE) is None
    c = closed()
    row = rec.to_json(trades.real_trade(real_trades.closed_input(messages.to_wire(c)), session_id="s1"))
    back = nt.from_trade(row, CHOICE)
    heard = nt.from_published(envelope(c, "connector", "closed.EURUSD"), CHOICE)
    assert back.id == heard.id and back.kind == "external_close" and back.data["ticket"] == 42
    assert back.text == heard.text
    ours = rec.to_json(trades.real_trade(real_trades.closed_input(messages.to_wire(closed(external=False))),
                                         session_id="s1"))
    assert nt.from_trade(ours, CHOICE) is None and nt.from_trade({**row, "action": "OPEN"}, CHOICE) is None


# ---- folding, rate limit, backoff ------------------------------------------------------------------------------


def test_one_notice_is_its_own_text():
    m = nt.fold([notice(1)], max_lines=20)
    assert m.text == "WARNING alert.x #1" and m.payload()["count"] == 1 and m.payload()["id"] == m.id


def test_a_burst_folds_by_kind_counted_and_keeps_every_notice_in_the_payload():
    burst = [notice(i) for i in range(50)] + [notice(50, "alert.halted", "critical")] + [notice(51)]
    m = nt.fold(burst, max_lines=20)
    assert m.text.splitlines() == ["Oracle Trader: 52 notifications",
                                   "51x alert.x (warning), the last: WARNING alert.x #51",
                                   "CRITICAL alert.halted #50"]
    assert [n["id"] for n in m.payload()["notices"]] == [f"id-{i}" for i in range(52)]


def test_kinds_beyond_the_line_limit_are_counted_on_the_last_line():
    burst = [notice(i, f"alert.k{i % 6}") for i in range(12)]
    m = nt.fold(burst, max_lines=4)
    lines = m.text.splitlines()
    assert len(lines) == 5 and lines[-1] == "... and 6 more of 3 other kinds"
    assert m.payload()["count"] == 12


def test_a_message_id_is_stable_for_the_same_notices_and_differs_otherwise():
    assert nt.fold([notice(1), notice(2)], 20).id == nt.fold([notice(1), notice(2)], 20).id
    assert nt.fold([notice(1), notice(2)], 20).id != nt.fold([notice(1)], 20).id
    with pytest.raises(ValueError, match="no notices"):
        nt.fold([], 20)


def test_rate_limit_one_message_per_interval():
    assert nt.may_form(100.0, None, 10.0)
    assert not nt.may_form(105.0, 100.0, 10.0)
    assert nt.may_form(110.0, 100.0, 10.0)
    assert nt.may_form(50.0, 100.0, 10.0)  # the clock went back: not stuck for the jump


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap():
    assert [nt.retry_delay(f, 1.0, 300.0) for f in range(0, 11)] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
    assert nt.retry_delay(10_000, 0.5, 60.0) == 60.0


def test_unknown_severities_are_named():
    with pytest.raises(ValueError, match="unknown severities: loud"):
        nt.severities(["warning", "loud"])


# ---- the durable record ----------------------------------------------------------------------------------------


def test_a_notice_heard_twice_is_recorded_once_even_across_a_reopen(tmp_path):
    store = NotifierStore(tmp_path / "n.db")
    assert store.record(notice(1), 1.0) and not store.record(notice(1), 2.0)
    store.close()
    again = NotifierStore(tmp_path / "n.db")
    assert not again.record(notice(1), 3.0)
    assert again.record(notice(2), 4.0, known=True)  # no news (in the store before the first start): never sent
    assert [n.id for n in again.unassigned()] == ["id-1"]


def test_a_message_pending_at_a_crash_is_sent_again_the_same_and_a_sent_one_never(tmp_path):
    path = tmp_path / "n.db"
    store = NotifierStore(path)
    for i in range(3):
        store.record(notice(i), float(i))
    first = nt.fold(store.unassigned(), 20)
    store.form(first, 10.0)
    assert store.unassigned() == [] and store.pending().id == first.id
    store.record(notice(3), 11.0)
    store.close()  # a kill -9 before the 2xx: the message is pending

    reopened = NotifierStore(path)
    pending = reopened.pending()
    assert pending is not None and pending.id == first.id and pending.payload == json.loads(
        json.dumps(first.payload()))
    assert reopened.mark_failed(first.id, "HTTP 503") == 1 and reopened.pending().failures == 1
    reopened.mark_sent(first.id, 12.0)
    assert reopened.last_formed() == 10.0
    reopened.close()

    after = NotifierStore(path)  # a kill -9 after the mark: nothing of it is sent again
    assert after.pending() is None
    assert [n.id for n in after.unassigned()] == ["id-3"]
    assert after.counts() == {"notices": 4, "waiting": 1, "messages_sent": 1, "messages_pending": 0}


# ---- sinks and the environment ---------------------------------------------------------------------------------


def cfg_with(**notifier) -> config.Config:
    return config.Config.model_validate({"version": "2.0", "home": "/tmp", "notifier": notifier})


def test_the_telegram_preset_posts_chat_id_and_text_with_the_id_to_the_bot_url():
    cfg = cfg_with(sink="telegram", telegram_api="http://127.0.0.1:9/")
    sink = sink_from(cfg, {"ORACLE_TELEGRAM_TOKEN": "123:abc", "ORACLE_TELEGRAM_CHAT_ID": "-100"})
    m = nt.fold([notice(1)], 20)
    req = request_for(sink, m.id, m.text, m.payload())
    assert req.url == "http://127.0.0.1:9/bot123:abc/sendMessage" and "123:abc" not in req.label
    body = json.loads(req.body)
    assert body["chat_id"] == "-100" and body["text"] == f"WARNING alert.x #1\n[id {m.id}]"
    assert req.headers["Idempotency-Key"] == m.id


def test_the_webhook_posts_the_payload():
    sink = sink_from(cfg_with(sink="webhook"), {"ORACLE_WEBHOOK_URL": "https://hooks.example/x"})
    m = nt.fold([notice(1), notice(2)], 20)
    req = request_for(sink, m.id, m.text, m.payload())
    assert req.url == "https://hooks.example/x" and json.loads(req.body) == m.payload()


def test_missing_secrets_are_named_every_one():
    cfg = cfg_with(sink="telegram", token_env="BOT_TOKEN")
    errors = config.notifier_env_errors(cfg, {})
    assert errors == [
        "notifier.token_env: environment variable BOT_TOKEN is not set (the Telegram bot's token, sink telegram)",
        "notifier.chat_id_env: environment variable ORACLE_TELEGRAM_CHAT_ID is not set (the Telegram chat id, sink "
        "telegram)"]
    with pytest.raises(SinkError, match="BOT_TOKEN is not set"):
        sink_from(cfg, {})
    assert config.notifier_env_errors(cfg_with(sink="webhook"), {"ORACLE_WEBHOOK_URL": "ftp://x"}) == [
        "notifier.webhook_url_env: ORACLE_WEBHOOK_URL is not an http(s) URL"]
    assert config.notifier_env_errors(cfg_with(), {}) == [] and sink_from(cfg_with(), {}) is None


def test_a_bad_variable_name_or_api_url_is_a_config_error_naming_the_key():
    with pytest.raises(ValueError, match="notifier.token_env"):
        cfg_with(sink="telegram", token_env="not a name")
    with pytest.raises(ValueError, match="notifier.telegram_api"):
        cfg_with(telegram_api="api.telegram.org")
