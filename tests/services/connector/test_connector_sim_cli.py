"""`python -m services.connector.sim` as its own process: TLS port, control port, clean shutdown."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.connector.ctrader.client import CTraderBroker, CTraderConfig
from services.connector.port import Bar
from services.connector.sim.cli import main as sim_main
from services.connector.sim.control import control

REPO = Path(__file__).resolve().parents[3]


def test_cli_runs_a_tls_simulator_in_its_own_process(csv_path: str, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.connector.sim", "--csv", csv_path, "--symbol", "EURUSD", "--timeframe", "H1",
         "--speed", "0", "--host", "127.0.0.1", "--port", "0", "--tls", "--start-bar", "200", "--state", str(state),
         "--log-level", "WARNING"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"port=(\d+) control_port=(\d+)", line)
        assert m, line + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        port, cport = int(m.group(1)), int(m.group(2))

        async def scenario() -> None:
            broker = CTraderBroker(CTraderConfig(host="127.0.0.1", port=port, tls=True, verify=False,
                                                client_id="sim-client", client_secret="sim-secret",
                                                access_token="sim-token", request_timeout=3))
            await broker.connect()
            hist = await broker.get_history("EURUSD", "H1", 3)
            await broker.subscribe_bars(["EURUSD"], "H1", since={"EURUSD": hist[-1].time})
            await asyncio.to_thread(control, cport, "advance", bars=2)
            bars = [await asyncio.wait_for(broker.events.get(), 5) for _ in range(2)]
            assert all(isinstance(b, Bar) for b in bars)
            assert bars[0].time > hist[-1].time
            await broker.close()

        asyncio.run(scenario())
        assert control(cport, "status")["bar_index"] == 202
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert state.exists()  # cursor and account saved on the way out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_reports_a_bad_csv(tmp_path: Path) -> None:
    assert sim_main(["--csv", str(tmp_path / "missing.csv"), "--port", "0"]) == 1


def test_control_commands(sim_factory, csv_bars) -> None:
    sim = sim_factory(start_time=csv_bars[300].time - 1, speed=0)
    port = sim.server.control_port
    st = control(port, "status")
    assert (st["bar_index"], st["bar_time"], st["paused"]) == (300, csv_bars[300].time, True)
    assert st["server_time"] - csv_bars[300].time in range(1, 60)  # the first instant (minute) of bar 300
    moved = control(port, "advance", ticks=5)  # one instant a minute
    assert moved["ticks"] == 5 and moved["server_time"] - csv_bars[300].time in range(5 * 60 + 1, 6 * 60)
    assert moved["symbols"]["EURUSD"] == {"open": True, "next_point": moved["next_point_time"]}
    with pytest.raises(RuntimeError, match="one of ticks, bars, until"):
        control(port, "advance", ticks=1, bars=1)
    with pytest.raises(RuntimeError, match="before the server time"):
        control(port, "advance", until=csv_bars[300].time)
    control(port, "speed", value=3600 * 1000)
    control(port, "resume")
    deadline = time.time() + 5
    while control(port, "status")["bar_index"] < 305 and time.time() < deadline:
        time.sleep(0.05)
    control(port, "pause")
    moved = control(port, "status")["bar_index"]
    assert moved >= 305
    time.sleep(0.1)
    assert control(port, "status")["bar_index"] == moved  # paused stays put
    for cmd, args in [("delay", {"seconds": 1}), ("swallow", {}), ("reject_orders", {}), ("silent", {"seconds": 0}),
                      ("clear", {}), ("save", {})]:
        assert control(port, cmd, **args)["ok"]
    with pytest.raises(RuntimeError, match="unknown command"):
        control(port, "explode")
