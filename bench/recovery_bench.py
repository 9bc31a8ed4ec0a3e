"""Recovery time: kill -9 of each process under the real supervisord -> the system RUNNING again.

    .venv/bin/python bench/recovery_bench.py [--rounds N]

A throwaway ORACLE_HOME with the repository's deploy/supervisord.conf, the simulator replaying the bundled data and
the demo model (production timeouts: 1 s heartbeats, 5 s watchdog). For each process, N times: SIGKILL its pid,
then time until supervisord has a new pid for it and the orchestrator reports RUNNING with that pid.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from harness import Home, wait_for  # noqa: E402

from common import config  # noqa: E402

PRODUCTION_CLOCKS = {
    "runtime": {"heartbeat_interval_s": 1.0, "hello_interval_s": 0.25, "request_timeout_ms": 2000},
    "orchestrator": {"heartbeat_timeout_s": 5.0, "restart_limit": 100, "step_timeout_s": 120},
}


def running_with(home: Home, name: str, pid: int) -> bool:
    try:
        s = home.status()
    except Exception:
        return False
    return s["system"] == "RUNNING" and s["services"][name]["pid"] == pid


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="orb") as d:
        home = Home(Path(d), PRODUCTION_CLOCKS)
        home.start_supervisord()
        try:
            t0 = time.monotonic()
            home.wait_state("RUNNING", timeout=60)
            print(f"boot to RUNNING under supervisord: {time.monotonic() - t0:.2f} s")
            results: dict[str, list[float]] = {}
            for name in config.SERVICES:
                for _ in range(a.rounds):
                    old = home.pid_of(name)
                    t0 = time.monotonic()
                    os.kill(old, signal.SIGKILL)
                    wait_for(lambda n=name, o=old: home.pid_of(n) not in (0, o), 30, f"{name} respawned", 0.02)
                    new = home.pid_of(name)
                    wait_for(lambda n=name, p=new: running_with(home, n, p), 60, f"RUNNING after {name}", 0.02)
                    results.setdefault(name, []).append(time.monotonic() - t0)
                    time.sleep(1.0)
            print(f"\nkill -9 -> RUNNING again ({a.rounds} rounds each)")
            for name, xs in results.items():
                print(f"  {name:13} median {statistics.median(xs):5.2f} s   max {max(xs):5.2f} s")
        finally:
            home.close()


if __name__ == "__main__":
    main()
