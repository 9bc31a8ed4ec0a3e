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
