"""The connector service's pure parts: bar publication state, order journal, broker settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from common import config, messages
from common.records.real_trades import real_trade_record
from services.connector import journal
from services.connector.ctrader import settings
from services.connector.freshness import latency_summary, market_open_now
from services.connector.port import Deal
from services.connector.state import (
    ConnectorState,
    closed_while_away,
    compact_bar,
    merged_subscriptions,
    opening_fills,
)

# ---- bar publication state ---------------------------------------------------------------------


def test_a_bar_is_published_once_and_in_order():
    s = ConnectorState()
    assert s.should_publish("EURUSD", "H1", 3600)
    s.record("EURUSD", "H1", 3600)
    assert not s.should_publish("EURUSD", "H1", 3600)
    assert not s.should_publish("EURUSD", "H1", 0)
    assert s.should_publish("EURUSD", "H1", 7200)
    assert s.should_publish("EURUSD", "M5", 3600)  # another timeframe is another stream
    s.record("EURUSD", "H1", 0)  # never moves back
    assert s.last == {"EURUSD.H1": 3600}


@pytest.mark.parametrize(
    "last, requested, expected",
    [(None, None, None), (None, 500, 500), (1000, None, 1000), (1000, 500, 1000), (1000, 2000, 2000)],
)
def test_resume_point_is_never_before_what_was_published(last, requested, expected):
    s = ConnectorState({"EURUSD.H1": last} if last is not None else {})
    assert s.since("EURUSD", "H1", requested) == expected


def test_state_round_trips_and_rejects_garbage():
    s = ConnectorState({"EURUSD.H1": 1483308000}, {"EURUSD": ["H1"]})
    assert ConnectorState.from_json(s.to_json()) == s
    for bad in ("", "{", "[]", '{"v": 2}', '{"v": 1, "last": []}'):
        with pytest.raises(ValueError):
            ConnectorState.from_json(bad)


def test_subscriptions_merge_config_with_previous_and_a_symbol_may_have_several_timeframes():
    subs = merged_subscriptions({"EURUSD": "H1", "XAUUSD": ["M15", "H4"]}, {"EURUSD": ["M15"], "USDJPY": ["H1"]})
    assert subs == {"EURUSD": ["M15", "H1"], "USDJPY": ["H1"], "XAUUSD": ["M15", "H4"]}
    assert compact_bar(1, 1.0, 2.0, 0.5, 1.5, 10.0) == [1, 1.0, 2.0, 0.5, 1.5, 10.0]


def test_a_state_file_of_one_timeframe_per_symbol_reads_as_a_list():
    old = '{"v": 1, "last": {"EURUSD.H1": 5}, "subscriptions": {"EURUSD": "H1"}, "positions": {}}'
    s = ConnectorState.from_json(old)
    assert s.subscriptions == {"EURUSD": ["H1"]}
    assert s.subscribe("EURUSD", "M15") and not s.subscribe("EURUSD", "M15")
    assert ConnectorState.from_json(s.to_json()).subscriptions == {"EURUSD": ["H1", "M15"]}


def test_bar_to_order_latency_summary():
    assert latency_summary([]) == messages.LatencySummary(count=0, p50=None, p90=None, p99=None, max=None)
    got = latency_summary([float(x) for x in range(100, 0, -1)])
    assert got == messages.LatencySummary(count=100, p50=51.0, p90=90.0, p99=99.0, max=100.0)


# ---- order journal ------------------------------------------------------------------------------


def _e(cid: str, status: str, **result) -> journal.Entry:
    return journal.Entry(cid, "open", status, 1.0, {"symbol": "EURUSD", "direction": 1, "lots": 0.1}, result)


def test_journal_replay_keeps_the_outcome_and_skips_a_torn_line():
    lines = [
        journal.line(_e("a", journal.SENT)),
        journal.line(_e("a", journal.DONE, success=True, ticket=7)),
        journal.line(_e("a", journal.SENT)),  # a later "sent" never hides an outcome
        journal.line(_e("b", journal.SENT)),
        '{"cid": "c", "kind": "op',  # the last write, torn by a crash
    ]
    entries, bad = journal.replay(lines)
    assert bad == 1
    assert entries["open:a"].status == journal.DONE and entries["open:a"].result["ticket"] == 7
    assert entries["open:b"].status == journal.SENT
    assert journal.claimed_tickets(entries) == {7}


def _deal(pid: int, direction: int = 1, volume: float = 0.1, closing: bool = False, t: float = 1000.0) -> Deal:
    return Deal(pid, pid, pid, "EURUSD", direction, volume, 1.1, t, closing)


def test_an_unresolved_order_is_matched_to_its_opening_deal_only():
    e = journal.Entry(
        "x", "open", journal.SENT, 5.0, {"symbol": "EURUSD", "direction": 1, "lots": 0.1, "server_time": 1000.0}
    )
    assert journal.match_opening_deal(e, [_deal(1)], set(), "EURUSD").position_id == 1
    assert journal.match_opening_deal(e, [_deal(1)], {1}, "EURUSD") is None  # another order's ticket
    assert journal.match_opening_deal(e, [_deal(2, direction=-1)], set(), "EURUSD") is None
    assert journal.match_opening_deal(e, [_deal(3, volume=0.2)], set(), "EURUSD") is None
    assert journal.match_opening_deal(e, [_deal(4, closing=True)], set(), "EURUSD") is None
    assert journal.match_opening_deal(e, [_deal(5, t=100.0)], set(), "EURUSD") is None  # before the send


# ---- broker settings ----------------------------------------------------------------------------


def _cfg(**broker) -> config.Config:
    return config.Config.model_validate({"version": "2", "home": "/tmp/oracle-home", "broker": broker})


CREDS = {
    "CTRADER_CLIENT_ID": "id",
    "CTRADER_CLIENT_SECRET": "secret",
    "CTRADER_ACCESS_TOKEN": "token",
    "CTRADER_ACCOUNT_ID": "12345",
}


def test_the_simulator_is_verified_tls_against_its_own_certificate_or_plain_tcp():
    bc, pair = settings.broker_config(_cfg(), {})
    assert (bc.host, bc.port, bc.tls, bc.verify, bc.client_id) == ("127.0.0.1", 5035, True, True, "sim-client")
    assert bc.ca_file == "/tmp/oracle-home/var/data/sim-broker-cert.pem"  # the file the simulator keeps its cert in
    assert (pair.access_token, pair.refresh_token) == ("sim-token", "sim-refresh")
    bc, _ = settings.broker_config(_cfg(sim={"tls": False, "port": 6000}), {})
    assert not bc.tls and not bc.verify and bc.ca_file is None and bc.port == 6000


@pytest.mark.parametrize("environment, host", [("demo", "demo.ctraderapi.com"), ("live", "live.ctraderapi.com")])
def test_ctrader_uses_verified_tls_and_credentials_from_the_environment(environment, host):
    bc, pair = settings.broker_config(_cfg(type="ctrader", environment=environment),
                                      {**CREDS, "CTRADER_REFRESH_TOKEN": "refresh"})
    assert (bc.host, bc.port, bc.tls, bc.verify, bc.account_id) == (host, 5035, True, True, 12345)
    assert (bc.client_id, bc.client_secret, pair.access_token, pair.refresh_token) == ("id", "secret", "token",
                                                                                        "refresh")
    assert "token" not in repr(pair) and "refresh" not in repr(pair)


def test_a_missing_credential_is_named():
    env = {k: v for k, v in CREDS.items() if k != "CTRADER_ACCESS_TOKEN"}
    with pytest.raises(settings.SettingsError, match="CTRADER_ACCESS_TOKEN is not set"):
        settings.broker_config(_cfg(type="ctrader"), env)
    with pytest.raises(settings.SettingsError, match="CTRADER_CLIENT_ID, CTRADER_CLIENT_SECRET, .* are not set"):
        settings.broker_config(_cfg(type="ctrader"), {})
    with pytest.raises(settings.SettingsError, match="numeric ctidTraderAccountId"):
        settings.broker_config(_cfg(type="ctrader"), {**CREDS, "CTRADER_ACCOUNT_ID": "login-9"})


def test_positions_closed_while_away_come_from_the_closing_deals():
    known = {
        "1": {"symbol": "EURUSD", "direction": 1, "open_time": 100.0, "label": "a", "comment": "OT1|a"},
        "2": {"symbol": "EURUSD", "direction": -1, "open_time": 100.0, "label": "b"},
        "3": {"symbol": "EURUSD", "direction": 1, "open_time": 100.0, "label": "c"},
    }
    closing = Deal(
        10,
        10,
        1,
        "EURUSD",
        -1,
        0.1,
        1.2,
        500.0,
        True,
        entry_price=1.1,
        gross_profit=100.0,
        commission=-0.7,
        balance=10099.3,
    )
    opening = Deal(11, 11, 3, "EURUSD", 1, 0.1, 1.1, 200.0, False)
    closes, unexplained = closed_while_away(known, [2], [opening, closing])
    (c,) = closes
    assert (c.ticket, c.direction, c.external, c.reason, c.label, c.comment) == (1, 1, True, "EXTERNAL", "a", "OT1|a")
    assert c.net_profit == pytest.approx(99.3) and c.balance == 10099.3
    assert unexplained == [3]  # gone, but its closing deal is not in the list
    (asked,), _ = closed_while_away(known, [2], [opening, closing], asked={1})
    assert (asked.external, asked.reason) == (False, "CLIENT")  # this connector asked that close: as its event said


def test_an_unrecorded_opening_is_the_fill_its_event_carried():
    """A position open at the broker whose opening was never recorded (killed between the record and the state):
    its opening deals are the fills the events carried, so their records have the same ids (one at the store)."""
    cid = "EURUSD-1488952800-O"
    position = messages.Position(7, "EURUSD", -1, 0.3, 1.1, 200.0, label=cid, comment="OT1|x")
    first = Deal(21, 20, 7, "EURUSD", -1, 0.2, 1.1, 200.0, False, commission=-1.2)
    second = Deal(22, 20, 7, "EURUSD", -1, 0.1, 1.1002, 200.5, False, commission=-0.6)
    others = [Deal(23, 23, 8, "EURUSD", 1, 0.1, 1.1, 200.0, False), Deal(24, 24, 7, "EURUSD", 1, 0.3, 1.2, 900.0, True)]
    fills = opening_fills(position, [second, *others, first])
    assert fills == [messages.Fill("EURUSD", 7, cid, -1, 0.2, 1.1, 200.0, 21, "OT1|x", -1.2),
                     messages.Fill("EURUSD", 7, cid, -1, 0.1, 1.1002, 200.5, 22, "OT1|x", -0.6)]
    event = messages.Fill("EURUSD", 7, cid, -1, 0.2, 1.1, 200.0, 21, "OT1|x", -1.2)  # what the live event said
    assert real_trade_record(messages.to_wire(fills[0]), closing=False) == real_trade_record(
        messages.to_wire(event), closing=False)
    assert opening_fills(position, others) == []  # the list does not reach back to it


def test_open_positions_are_remembered_once():
    s = ConnectorState()
    assert s.opened(5, "EURUSD", 1, 10.0, "x", "OT1|x") and not s.opened(5, "EURUSD", 1, 10.0, "x")
    assert ConnectorState.from_json(s.to_json()).positions == {"5": s.positions["5"]}
    assert s.positions["5"]["comment"] == "OT1|x"  # a close seen only after a restart still has the order's comment
    assert s.closed(5) and not s.closed(5)


def test_a_position_whose_opening_was_not_recorded_is_found_at_the_next_connect():
    s = ConnectorState()
    assert s.opened(5, "EURUSD", 1, 10.0, "x")  # known from the order's answer: its fill event not recorded yet
    assert s.opened(6, "EURUSD", 1, 10.0, "y", recorded=True)  # its fill recorded
    after_restart = ConnectorState.from_json(s.to_json())
    assert after_restart.unrecorded([5, 6, 7]) == {5, 7}  # 7: opened while the process was away
    assert after_restart.opened(5, "EURUSD", 1, 10.0, "x", recorded=True)  # now recorded: a change to save
    assert not after_restart.opened(5, "EURUSD", 1, 10.0, "x", recorded=True)
    assert after_restart.unrecorded([5, 6]) == set()
    legacy = ConnectorState.from_json('{"v": 1, "positions": {"8": {"symbol": "EURUSD", "direction": 1, '
                                      '"open_time": 1.0, "label": "z"}}}')
    assert legacy.unrecorded([8]) == set()  # a state file from before the flag: its openings were recorded


def test_the_simulator_takes_its_settings_from_the_same_config_section(tmp_path):
    from services.connector.sim.cli import config_from_settings

    cfg = config.Config.model_validate(
        {"version": "2", "home": str(tmp_path), "broker": {"sim": {"speed": 0, "port": 7000, "control_port": 7001}}}
    )
    sc = config_from_settings(cfg)
    assert (sc.port, sc.control_port, sc.speed, sc.start_bar, sc.tls) == (7000, 7001, 0, 1100, True)
    assert sc.cert_path == str(tmp_path / "var" / "data" / "sim-broker-cert.pem")
    assert (sc.refresh_token, sc.deposit_asset, sc.token_lifetime_s) == ("sim-refresh", "USD", 2_628_000)
    assert sc.csv_path == str(config.REPO_ROOT / "data" / "EURUSD_H1_2017.csv")  # bundled: not in this home
    assert sc.state_path == str(tmp_path / "var" / "data" / "sim-broker.json")
    bc, pair = settings.broker_config(cfg, {})
    assert (bc.port, bc.client_id, pair.access_token, bc.account_id) == (7000, sc.client_id, sc.access_token, 1000001)
    assert (sc.synthetic_symbols, sc.synthetic_offset_bars, sc.spot_interval_s) == (0, 24, 60)
    many = config.Config.model_validate({"version": "2", "broker": {"sim": {"synthetic_symbols": 20,
                                                                           "spot_interval_s": 3600}}})
    assert (config_from_settings(many).synthetic_symbols, config_from_settings(many).spot_interval_s) == (20, 3600)
    with pytest.raises(ValidationError, match="spot_interval_s"):
        config.Config.model_validate({"version": "2", "broker": {"sim": {"spot_interval_s": 0}}})


# ---- bar freshness: is the market open? -------------------------------------------------------------------------


def test_a_market_is_open_by_its_calendar_at_the_broker_time_moved_on_by_the_wall_clock():
    import datetime as dt

    from services.connector.sim.catalog import METALS

    def at(h: int, m: int = 0) -> float:  # Thursday 21 December 2017, UTC (New York 17:00 = 22:00 UTC)
        return dt.datetime(2017, 12, 21, h, m, tzinfo=dt.UTC).timestamp()

    assert market_open_now(None, METALS, at(21, 59), 0.0)
    assert not market_open_now(None, METALS, at(22, 10), 0.0)  # gold's daily break, while forex ticks
    assert not market_open_now(None, METALS, at(21, 59), 120.0)  # no tick since 21:59, two minutes ago
    assert market_open_now(None, METALS, at(23, 1), 0.0)
    assert not market_open_now(at(23, 1), METALS, at(23, 1), 0.0)  # the broker refused an order: closed
    assert market_open_now(None, None, at(22, 10), 0.0) and market_open_now(None, METALS, None, 0.0)
