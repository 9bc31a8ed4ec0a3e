import status_samples
from rich.console import Console

from common import messages
from common.top import TopView


def render_text(view: TopView) -> str:
    console = Console(width=200, record=True)
    console.print(view.render())
    return console.export_text()


def test_view_folds_the_streams_per_symbol():
    v = TopView()
    v.apply(messages.Bar("EURUSD", "H1", 1483308000, 1.0, 1.1, 0.9, 1.05, 10.0), 0)
    v.apply(messages.Signal("EURUSD", 1483308000, 1.05, 2, 1, 2, 3, 12.5), 0)
    v.apply(messages.Fill("EURUSD", 7, "cid", 1, 0.03, 1.0501, 1483311600.0, 70), 0)
    v.apply(messages.Ack("EURUSD", 1483308000, "OK", "EDGE"), 0)
    v.apply(messages.PositionClosed(7, "EURUSD", 1, 0.03, 1.0501, 1.0480, -6.3, 0.0, -0.2, -6.5, 0.0, "SL_TP", True), 0)
    v.apply(messages.PaperMetrics("EURUSD", 3, 4.2, 0.5, 1.2, 0.01, 0.3, 10004.2), 0)
    v.apply(messages.Alert("halted", "critical", "system HALTED: paper: FATAL"), 0)
    r = v.symbols["EURUSD"]
    assert (r.direction, r.intensity, r.hmm_state, r.virtual_pnl) == (1, 2, 3, 12.5)
    assert (r.real_direction, r.real_pnl, r.paper_pnl, r.last_ack) == (0, -6.5, 4.2, "OK EDGE")
    text = render_text(v)
    assert "EURUSD" in text and "LONG2" in text and "-6.50" in text and "critical halted" in text


def test_view_shows_services_backlog_and_issues_from_the_status():
    v = TopView()
    v.set_status(status_samples.orchestrator(system="DEGRADED", issues=["connector: broker not connected"]))
    text = render_text(v)
    assert "DEGRADED" in text and "persistence backlog: 17" in text and "broker not connected" in text
    v.set_status(None, "orchestrator not answering")
    assert "orchestrator not answering" in render_text(v)


def _position(symbol: str, direction: int, volume: float, pnl: float) -> messages.Position:
    return messages.Position(ticket=hash((symbol, direction, volume)) & 0xFFFF or 1, symbol=symbol,
                             direction=direction, volume=volume, open_price=1.25, open_time=1.7e9, pnl=pnl)


def _account(balance: float, equity: float) -> messages.AccountInfo:
    return messages.AccountInfo(balance=balance, equity=equity, margin=10.0, free_margin=equity - 10.0,
                                margin_level=0.0, currency="USD", leverage=100.0)


def test_the_real_position_is_the_brokers_book_not_the_fills_seen():
    v = TopView()
    v.apply(messages.Fill("EURUSD", 7, "cid", 1, 0.03, 1.0501, 1483311600.0, 70), 0)  # seen; then closed unseen
    v.set_book(messages.Positions([_position("GBPUSD", -1, 0.02, -1.5), _position("GBPUSD", 1, 0.01, 0.5)],
                                  _account(10_000.0, 9_999.0)))
    eur, gbp = v.symbols["EURUSD"], v.symbols["GBPUSD"]
    assert (eur.real_direction, eur.real_volume, eur.real_floating) == (0, 0.0, None)
    assert (gbp.real_direction, gbp.real_volume, gbp.real_floating) == (-1, 0.01, -1.0)
    text = render_text(v)
    row = next(line for line in text.splitlines() if "GBPUSD" in line)
    assert "SHORT" in row and "0.01" in row and "-1.00" in row
    assert "balance 10000.00 equity 9999.00 USD" in text


def test_the_session_history_and_down_are_shown():
    v = TopView()
    v.set_status(status_samples.orchestrator(refused_models=["GBPUSD_M15.zip: refused: no policy"]))
    v.set_session({"session_id": "ab12cd34", "status": "RUNNING", "total_trades": 2, "total_pnl": -3.25})
    v.set_history([  # newest first, as the store lists them
        {"timestamp": "2026-12-07T03:00:02Z", "severity": "CRITICAL", "event_type": "HALT", "source": "orchestrator",
         "message": "halt service=paper"},
        {"timestamp": "2026-12-07T03:00:01Z", "severity": "INFO", "event_type": "HELLO", "source": "orchestrator",
         "message": "hello"},
        {"timestamp": "2026-12-07T03:00:00Z", "severity": "WARNING", "event_type": "RESTART",
         "source": "orchestrator", "message": "restart service=paper"},
    ])
    text = render_text(v)
    assert "session ab12cd34 RUNNING: 2 trades closed, realized PnL -3.25" in text
    assert "model refused: GBPUSD_M15.zip: refused: no policy" in text
    lines = [line.strip() for line in text.splitlines()]
    assert lines.index("2026-12-07T03:00:00 warning RESTART (orchestrator): restart service=paper") < \
        lines.index("2026-12-07T03:00:02 critical HALT (orchestrator): halt service=paper")
    assert "hello" not in text  # only warnings and worse
    v.set_down("supervisord is not running (no socket at var/supervisor.sock)")
    assert render_text(v).strip() == "system down: supervisord is not running (no socket at var/supervisor.sock)"


def test_a_catch_up_run_is_folded_bar_by_bar_and_the_row_shows_its_latest():
    v = TopView()
    bars = [messages.Bar("EURUSD", "H1", 1483308000 + 3600 * i, 1.0, 1.1, 0.9, 1.05 + i / 100, 10.0) for i in range(3)]
    v.apply(messages.BarRun("EURUSD", "H1", bars), 0)
    signals = [messages.Signal("EURUSD", b.time, b.close, 0 if i < 2 else 4, 0 if i < 2 else -1, 0 if i < 2 else 1,
                               1, 0.0) for i, b in enumerate(bars)]
    v.apply(messages.SignalRun("EURUSD", signals), 0)
    r = v.symbols["EURUSD"]
    assert (r.last_bar_time, r.last_close) == (bars[-1].time, bars[-1].close)
    assert (r.direction, r.intensity) == (-1, 1)
    assert "SHORT1" in render_text(v)


def test_a_late_top_shows_a_signals_bar_and_close_when_it_heard_no_bar():
    v = TopView()
    v.apply(messages.Signal("EURUSD", 1483308000, 1.0583, 0, 0, 0, 3, 0.0), 0)  # from last_signals at the first look
    r = v.symbols["EURUSD"]
    assert (r.last_bar_time, r.last_close) == (1483308000, 1.0583)
    assert "1.0583" in render_text(v)
