"""Validate before effect: the real connector process against the real simulator refuses an order whose arguments
are not finite, out of range or of the wrong sign with a `bad_body` reply naming the field and the value, and the
refusal leaves no journal line and no effect at the broker."""

from __future__ import annotations

import math
import stat
from pathlib import Path

import pytest
from harness import Home, wait_for

from common import bus, messages
from services.connector.sim.control import control

NAN, INF = math.nan, math.inf


@pytest.fixture(scope="module")
def connector(tmp_path_factory):
    home = Home(tmp_path_factory.mktemp("validate"), {"broker": {"sim": {"speed": 0}}})
    try:
        home.start("connector")
        wait_for(lambda: home.request("connector", "ping"), 20, "connector up")
        res = home.request("connector", "step", messages.StepArgs("connector.connect"), timeout_ms=20000)
        assert res.ok, res.error
        yield home
    finally:
        home.close()


def journal(home: Home) -> str:
    path = Path(home.status_of("connector")["journal"]["path"])
    return path.read_text() if path.exists() else ""


def sim_positions(home: Home) -> tuple:
    """The broker's side: its positions (with their stops) and balance, as the simulator holds them."""
    status = control(home.config().broker.sim.control_port, "status")
    return status["positions"], status["balance"]


def refused(home: Home, op: str, args) -> bus.RequestFailed:
    with pytest.raises(bus.RequestFailed) as info:
        home.request("connector", op, args, timeout_ms=5000)
    return info.value


def opened(home: Home, cid: str) -> messages.OrderResult:
    res = home.request("connector", "order_open", messages.OrderOpenArgs("EURUSD", 1, 0.01, cid), timeout_ms=15000)
    assert res.success, res.error
    return res


@pytest.mark.parametrize(("field", "value", "shown"), [
    ("lots", INF, "inf"), ("lots", NAN, "nan"), ("lots", -0.01, "-0.01"), ("lots", 0.0, "0.0"),
    ("lots", 1e300, "1e+300"), ("sl_distance", NAN, "nan"), ("sl_distance", INF, "inf"),
    ("sl_distance", -0.001, "-0.001"), ("tp_distance", NAN, "nan"), ("direction", 2, "2"), ("direction", 0, "0"),
    ("client_order_id", "x" * 5000, "xxx"), ("comment", "c" * 5000, "ccc"),
])
def test_a_bad_order_open_is_refused_before_the_journal(connector, field, value, shown):
    before_journal, before_sim = journal(connector), sim_positions(connector)
    args = {"symbol": "EURUSD", "direction": 1, "lots": 0.01, "client_order_id": f"bad-{field}-{value!r:.20}",
            field: value}
    exc = refused(connector, "order_open", messages.OrderOpenArgs(**args))
    assert exc.code == "bad_body", exc
    assert f"order_open args: {field}: " in exc.message and shown in exc.message
    assert len(exc.message) < 300  # the value is shown truncated
    assert journal(connector) == before_journal  # no SENT line
    assert sim_positions(connector) == before_sim


@pytest.mark.parametrize(("field", "value"), [("sl", NAN), ("sl", -1.0), ("sl", 0.0), ("sl", INF), ("tp", NAN),
                                              ("tp", -1.5)])
def test_a_bad_amend_is_refused_and_the_position_keeps_its_stops(connector, field, value):
    pos = opened(connector, f"amend-{field}-{value!r}")
    before = sim_positions(connector)
    exc = refused(connector, "order_amend", messages.OrderAmendArgs(pos.ticket, **{field: value}))
    assert exc.code == "bad_body" and f"order_amend args: {field}: " in exc.message, exc
    assert sim_positions(connector) == before
    book = connector.request("connector", "positions", timeout_ms=5000)
    [mine] = [p for p in book.positions if p.ticket == pos.ticket]
    assert mine.sl == pos.sl and mine.tp == pos.tp


@pytest.mark.parametrize(("args", "field"), [
    (messages.OrderAmendArgs(-5, sl=1.1), "ticket"), (messages.OrderAmendArgs(2**64 - 1, sl=1.1), "ticket"),
    (messages.OrderCloseArgs(7, lots=NAN), "lots"), (messages.OrderCloseArgs(7, lots=-1.0), "lots"),
    (messages.OrderCloseArgs(0), "ticket"),
])
def test_bad_close_and_amend_tickets_and_lots_are_refused(connector, args, field):
    before = journal(connector)
    op = "order_amend" if isinstance(args, messages.OrderAmendArgs) else "order_close"
    exc = refused(connector, op, args)
    assert exc.code == "bad_body" and f"{op} args: {field}: " in exc.message, exc
    assert journal(connector) == before


@pytest.mark.parametrize(("args", "field"), [
    (messages.HistoryArgs("EURUSD", "H1", count=-1), "count"),
    (messages.HistoryArgs("EURUSD", "H1", since=2**62), "since"),
    (messages.HistoryArgs("EURUSD", "H1", count=5, until=-1), "until"),
    (messages.SubscribeArgs("EURUSD", "H1", since=-3), "since"),
    (messages.SymbolArgs("E" * 100_000), "symbol"),
])
def test_bad_market_data_requests_are_refused_naming_the_field(connector, args, field):
    exc = refused(connector, "history" if isinstance(args, messages.HistoryArgs) else
                  "subscribe" if isinstance(args, messages.SubscribeArgs) else "symbol_info", args)
    assert exc.code == "bad_body" and f" args: {field}: " in exc.message and len(exc.message) < 300, exc


def test_a_good_order_still_goes_through(connector):
    before = journal(connector)
    res = opened(connector, "good-one")
    assert res.ticket and journal(connector) != before


def test_the_journal_state_and_the_simulators_files_are_private(connector):
    opened(connector, "private-files")  # the journal has lines
    cfg = connector.config()
    data = cfg.path(cfg.data_dir)
    made = [data / cfg.connector.journal_file, data / cfg.broker.sim.state_file, data / cfg.broker.sim.cert_file]
    assert all(p.exists() for p in made), made
    for path in [data, *data.rglob("*")]:
        want = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == want, path
