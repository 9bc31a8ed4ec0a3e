"""A status report of each service (common/messages/status.py), every field set: for the tests of the wire and of
the views that print reports."""

from __future__ import annotations

from typing import Any

from common import messages


def common_part(service: str, **changes: Any) -> dict[str, Any]:
    """The fields of the part every process has."""
    return {"service": service, "pid": 4242, "epoch": 7, "version": "1.0", "state": "RUNNING", "uptime_s": 12.5,
            "rss_bytes": 40 * 2**20, "steps": ["x.start"], "progress": {"bars_seen": 3}, "wire_errors": {},
            "sequence": messages.SequenceCounts(gaps=0, missed=0, restarts=1, dropped=0), "system_state": "RUNNING",
            "dry_run": False, "not_implemented": [], "outbox": messages.OutboxCounts(pending=1, acked=9, rejected=0),
            "refused": {"step paper": 1}, **changes}


def summary(**changes: Any) -> messages.ServiceSummary:
    fields: dict[str, Any] = {
        "state": "RUNNING", "pid": 5, "epoch": 3, "uptime_s": 60.0, "hb_age_s": 0.2, "rss_bytes": 40 * 2**20,
        "restarts": 1, "steps": ["persistence.open"], "supervisor_state": "RUNNING", "info": {"backlog": 17},
        "last_restart_reason": "", "wire_errors": {}}
    return messages.ServiceSummary(**{**fields, **changes})


def orchestrator(**changes: Any) -> messages.OrchestratorStatus:
    own = summary(restarts=None, hb_age_s=0.0, steps=[], info={})
    fields: dict[str, Any] = {
        "system": "RUNNING", "since_ts": 1_700_000_000_000_000_000, "halted_reason": "", "issues": [],
        "supervisor": "ok", "services": {"orchestrator": own, "persistence": summary(uptime_s=None, rss_bytes=None)},
        "boot_log": [{"event": "go", "ts": 1, "service": "persistence", "step": "persistence.open"}]}
    return messages.OrchestratorStatus(**common_part("orchestrator"), **{**fields, **changes})


def connector() -> messages.ConnectorStatus:
    return messages.ConnectorStatus(
        **common_part("connector"),
        broker={"type": "sim", "environment": "", "connected": True, "reason": "", "auth_problem": "",
                "server_time": 1.7e9, "token": "ab12"},
        subscriptions={"EURUSD": ["H1"]}, last_bar_time={"EURUSD.H1": 1483308000},
        journal=messages.JournalSummary(entries=2, path="/var/connector/orders.jsonl"),
        orders=messages.OrdersInFlight(in_flight=0, in_flight_peak=2),
        bar_to_order_ms=messages.LatencySummary(count=0, p50=None, p90=None, p99=None, max=None))


def preditor() -> messages.PreditorStatus:
    model = messages.ModelStatus(file="EURUSD_H1.npz", timeframe="H1", model_id="0123456789abcdef", legacy=False,
                                 warm=True, restored="", last_bar=1483308000, decisions=4, signals=4,
                                 last_bar_age_s=None, error="")
    return messages.PreditorStatus(**common_part("preditor"), models={"EURUSD": model}, errors=[], pending_bars=0)


def executor() -> messages.ExecutorReport:
    return messages.ExecutorReport(
        **common_part("executor", dry_run=True), symbols=["EURUSD"], paused=False, halted=False, halt_reason="",
        stopped=False, synced=True, connected=None,
        positions=[messages.TradingPosition(ticket=7, symbol="EURUSD", direction=1, lots=0.03, label="c1")],
        due_closes=[messages.DueAtOpen(ticket=7, symbol="EURUSD", lots=0.03, client_order_id="cid",
                                       reason="SIGNAL_WAIT", action="CLOSE", bar_time=None, since=1.7e9,
                                       state="WAITING", sent=0)],
        markets={"EURUSD": messages.MarketState(symbol="EURUSD", open=False, time=1.7e9, reason="MARKET_CLOSED")},
        closed_markets=["EURUSD"], orphans=[], modelled=["EURUSD"], last_decisions={"EURUSD": "OPEN"},
        last_bar_time={"EURUSD": 1483308000}, pending_signals=[],
        risk=messages.RiskStatus(session_start_balance=1000.0, peak_equity=1000.0, equity=990.0))


def paper() -> messages.PaperStatus:
    position = messages.TwinPosition(direction=1, intensity=2, entry_price=1.05, entry_time=1483308000,
                                     floating_pnl=-1.5)
    account = messages.PaperAccountStatus(balance=10000.0, equity=9998.5, trades=3, pnl=4.2,
                                          last_bar_time=1483308000, position=position)
    return messages.PaperStatus(**common_part("paper"), accounts={"EURUSD": account}, restored=True,
                                state_file="/var/paper/book.json", journal="/var/paper/journal", unsaved=0)


def persistence() -> messages.PersistenceStatus:
    return messages.PersistenceStatus(
        **common_part("persistence"), store=messages.StoreStatus(open=True, path="/var/oracle.db", last_error=""),
        session={"session_id": "s1", "status": "RUNNING"}, persistence={"backlog": 0}, unwritten=0, balance=None)


def every_service() -> dict[str, messages.ProcessStatus]:
    """One report per service, by name; and a process that is none of them."""
    return {"orchestrator": orchestrator(), "connector": connector(), "preditor": preditor(),
            "executor": executor(), "paper": paper(), "persistence": persistence(),
            "sender": messages.ProcessStatus(**common_part("sender"))}
