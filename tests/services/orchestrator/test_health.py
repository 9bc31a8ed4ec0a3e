import pytest

from common.config import Health
from common.messages import Heartbeat
from services.orchestrator import health
from services.orchestrator.registry import ServiceView

CFG = Health(memory_limit_mb=100, max_backlog=10, bar_timeout_factor=2.0, bar_grace_s=60)
MB = 1024 * 1024


def view(name="preditor", rss=10 * MB, info=None, last_hb=100.0) -> ServiceView:
    v = ServiceView(name)
    v.last_hb = last_hb
    v.hb = Heartbeat(name, 1, 1, "RUNNING", 1.0, rss, info=info or {})
    return v


@pytest.mark.parametrize(
    "v, expected",
    [
        (view(), []),
        (view(rss=101 * MB), ["preditor: RSS 101 MB over the 100 MB limit"]),
        (view("connector", info={"connected": False}), ["connector: broker not connected"]),
        (view("connector", info={"connected": True}), []),
        # the broker refused the credentials: what a person must do, instead of a bare "not connected"
        (view("connector", info={"connected": False, "broker_auth": "the broker refused ...; hand in a new pair"}),
         ["connector: the broker refused ...; hand in a new pair"]),
        (view("persistence", info={"backlog": 11}), ["persistence: backlog of 11 writes over 10"]),
        (view("persistence", info={"backlog": 10}), []),
        # H1: stale after 2 x 3600 + 60 s; M15: after 2 x 900 + 60 s
        (view(info={"symbols": {"EURUSD": {"timeframe": "H1", "last_bar_age_s": 7000}}}), []),
        (
            view(info={"symbols": {"EURUSD": {"timeframe": "H1", "last_bar_age_s": 7300}}}),
            ["preditor: EURUSD H1: no bar for 7300 s (limit 7260 s)"],
        ),
        (
            view(info={"symbols": {"GER40": {"timeframe": "M15", "last_bar_age_s": 1900}}}),
            ["preditor: GER40 M15: no bar for 1900 s (limit 1860 s)"],
        ),
        # the connector's streams are named "SYM TF"; a closed market (weekend, break, holiday) makes no bar
        (
            view("connector", info={"symbols": {"XAUUSD M15": {"timeframe": "M15", "last_bar_age_s": 1900}}}),
            ["connector: XAUUSD M15: no bar for 1900 s (limit 1860 s)"],
        ),
        (view("connector", info={"symbols": {"XAUUSD M15": {"timeframe": "M15", "last_bar_age_s": 90_000,
                                                            "market_open": False}}}), []),
        (view(last_hb=90.0), ["preditor: no heartbeat for 10.0 s"]),
        # after a weekend the market has been open for 600 s: the first H1 bar is not due yet, whatever the age
        (view("connector", info={"symbols": {"EURUSD H1": {"timeframe": "H1", "last_bar_age_s": 180_000,
                                                          "market_open": True, "open_for_s": 600}}}), []),
        (view("connector", info={"symbols": {"EURUSD H1": {"timeframe": "H1", "last_bar_age_s": 180_000,
                                                          "market_open": True, "open_for_s": 8000}}}),
         ["connector: EURUSD H1: no bar for 8000 s (limit 7260 s)"]),
        (view(last_hb=None), ["preditor: no heartbeat yet"]),
    ],
)
def test_issues(v, expected):
    assert health.issues([v], 100.0, CFG, hb_timeout_s=5.0) == expected


def test_a_market_the_connector_reports_closed_is_no_alarm_for_the_preditor_either():
    """The preditor cannot tell a closed market (gold's daily break) from a silent feed: the connector's word holds
    for it, symbol by symbol."""
    connector = view("connector", info={"symbols": {
        "XAUUSD M15": {"timeframe": "M15", "last_bar_age_s": 1900, "market_open": False},
        "EURUSD M15": {"timeframe": "M15", "last_bar_age_s": 10, "market_open": True}}})
    preditor = view(info={"symbols": {"XAUUSD": {"timeframe": "M15", "last_bar_age_s": 1900},
                                      "EURUSD": {"timeframe": "M15", "last_bar_age_s": 1900}}})
    assert health.issues([connector, preditor], 100.0, CFG, hb_timeout_s=5.0) == [
        "preditor: EURUSD M15: no bar for 1900 s (limit 1860 s)"]
    assert health.closed_markets([connector, preditor]) == {"XAUUSD"}


def test_after_a_reopening_the_first_bar_is_not_due_before_a_period_for_any_service():
    """Monday morning: the preditor's last bar is Friday's, but the market opened 10 minutes ago (the connector's
    `open_for_s`): the first H1 bar of the week is not due yet; 2 h after the open it is."""
    def both(open_for_s: float) -> list:
        connector = view("connector", info={"symbols": {"EURUSD H1": {
            "timeframe": "H1", "last_bar_age_s": 600, "market_open": True, "open_for_s": open_for_s}}})
        preditor = view(info={"symbols": {"EURUSD": {"timeframe": "H1", "last_bar_age_s": 180_000}}})
        return health.issues([connector, preditor], 100.0, CFG, hb_timeout_s=5.0)

    assert both(600) == []
    assert both(8000) == ["preditor: EURUSD H1: no bar for 8000 s (limit 7260 s)"]


def test_supervisord_running_other_preditor_programs_than_the_configuration_is_said():
    single = {"preditor": {"group": "preditor"}, "executor": {"group": "executor"}}
    two = {"preditor-0": {"group": "preditor"}, "preditor-1": {"group": "preditor"}, "executor": {"group": "executor"}}
    assert health.programs_problem("preditor", ["preditor"], single) == ""
    assert health.programs_problem("preditor", ["preditor-0", "preditor-1"], two) == ""
    assert health.programs_problem("preditor", ["preditor"], {"executor": {"group": "executor"}}) == ""
    missing = health.programs_problem("preditor", ["preditor-0", "preditor-1"], single)
    assert missing.startswith("supervisord runs the preditor programs preditor, the configuration has preditor-0, "
                              "preditor-1") and "numprocs=2, process_name" in missing
    extra = health.programs_problem("preditor", ["preditor"], two)
    assert "configuration has preditor (deploy/supervisord.conf [program:preditor]: numprocs=1)" in extra


def test_a_program_that_failed_permanently_is_not_also_a_missing_heartbeat():
    failed = ServiceView("connector")
    failed.failure = "broker.type: ctrader needs the credentials: environment variable CTRADER_CLIENT_ID not set"
    assert health.issues([failed, ServiceView("paper")], 100.0, Health(), 5.0) == ["paper: no heartbeat yet"]
