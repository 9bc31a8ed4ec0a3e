"""The simulator against Spotware's official Python client: conformance_session.py runs `ctrader_open_api.Client`
(Twisted) in its own process against the simulator started here (TLS), through every message the connector sends
and the answers and events it handles, and checks each against the protobuf contract. This process never imports
Twisted; it reads the script's JSON report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from simclient import SimFactory

SCRIPT = Path(__file__).with_name("conformance_session.py")
CONNECTOR = Path(__file__).resolve().parents[3] / "services" / "connector"
START = 1_484_244_000  # Thursday 2017-01-12 18:00 UTC: a rollover at 22:00, the weekend a day later
# requests the connector's code names without sending them (each must stay unsent: checked below)
NOT_SENT = {"ProtoOAGetTickDataReq": "named only in transport.HISTORY_TYPES, the historical-data rate class"}
EVENTS = {"ProtoHeartbeatEvent", "ProtoOASpotEvent", "ProtoOAExecutionEvent", "ProtoOAOrderErrorEvent",
          "ProtoOAAccountsTokenInvalidatedEvent", "ProtoOAAccountDisconnectEvent", "ProtoOAClientDisconnectEvent"}


def connector_sources() -> list[Path]:
    return sorted(p for p in CONNECTOR.rglob("*.py") if "sim" not in p.relative_to(CONNECTOR).parts)


def connector_requests() -> tuple[set[str], set[str]]:
    """(the ProtoOA...Req messages the connector's code builds, every ProtoOA...Req it names), from its source
    (services/connector without the simulator)."""
    built: set[str] = set()
    named: set[str] = set()
    for path in connector_sources():
        text = path.read_text(encoding="utf-8")
        built.update(re.findall(r"\b(ProtoOA[A-Za-z]+Req)\s*\(", text))
        named.update(re.findall(r"\b(ProtoOA[A-Za-z]+Req)\b", text))
    return built, named


def required_requests() -> set[str]:
    built, named = connector_requests()
    return built | (named - set(NOT_SENT))


def describe(failed: list[dict[str, Any]]) -> str:
    return "\n".join(f"- {c['id']} [{c['request']}]\n    expected: {c['expected']}\n    got:      {c['got']}"
                     for c in failed)


def test_the_connector_request_list_is_read_from_its_source() -> None:
    built, named = connector_requests()
    assert {"ProtoOAApplicationAuthReq", "ProtoOANewOrderReq", "ProtoOAGetTrendbarsReq",
            "ProtoOARefreshTokenReq"} <= built
    assert not set(NOT_SENT) & built, "a request listed as never sent is now built by the connector: cover it"
    assert set(NOT_SENT) <= named, "a request listed as never sent is no longer named: drop it from NOT_SENT"


@pytest.mark.timeout(180)
def test_official_client_conformance(sim_factory: SimFactory, tmp_path: Path) -> None:
    sim = sim_factory(tls=True, heartbeat_interval=1.0, start_time=START)
    report_path = tmp_path / "conformance.json"
    cmd = [sys.executable, str(SCRIPT), "--port", str(sim.server.port), "--control-port",
           str(sim.server.control_port), "--report", str(report_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0 and report_path.exists(), f"the session script failed:\n{proc.stderr[-4000:]}"
    report = json.loads(report_path.read_text())
    failed = [c for c in report["checks"] if not c["ok"]]
    assert report["error"] is None, f"the session broke off:\n{report['error']}\nfailed so far:\n{describe(failed)}"
    assert not failed, f"{len(failed)} of {len(report['checks'])} conformance checks failed:\n{describe(failed)}"

    sent, received = set(report["sent"]), set(report["received"])
    missing = required_requests() - sent
    assert not missing, f"requests the connector sends that the conformance session does not: {sorted(missing)}"
    assert "ProtoHeartbeatEvent" in sent
    assert received >= EVENTS, f"events never received: {sorted(EVENTS - received)}"
    for name in sent - {"ProtoHeartbeatEvent"}:  # every request got an answer of its own kind at least once
        assert name.replace("Req", "Res") in received or name in {
            "ProtoOANewOrderReq", "ProtoOAClosePositionReq", "ProtoOAAmendPositionSLTPReq"}, name
    assert len(report["checks"]) > 150
