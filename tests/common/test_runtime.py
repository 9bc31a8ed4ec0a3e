"""The runtime in a real process: heartbeats keep going while a long lifecycle step runs."""

import json
import subprocess
import sys
import time

import pytest
import zmq
from harness import Home, wait_for

from common import bus

SLOW_SERVICE = """
import time
from common import runtime

class Slow(runtime.Service):
    name = "persistence"

    def on_step(self, step, args):
        time.sleep(3.0)  # a long warmup, with no beat_if_due() calls
        return {}

raise SystemExit(runtime.main(Slow, []))
"""


@pytest.fixture
def home(tmp_path):
    h = Home(tmp_path)
    yield h
    h.close()


def test_heartbeats_continue_during_a_long_step(home):
    cfg = home.config()
    ctx = zmq.Context.instance()
    sub = bus.Subscriber(ctx, [cfg.endpoint("persistence", "pub")], ["hb.persistence"], bus.WireErrors("t"))
    home.start("orchestrator")
    slow = subprocess.Popen([sys.executable, "-c", SLOW_SERVICE], env=home.env, cwd=home.root)
    try:
        beats = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(b.state == "RUNNING" for b in beats):
            if sub.sock.poll(200):
                beats += [r.envelope.body for r in sub.drain()]
        during = [b for b in beats if b.state == "STEP"]
        assert len(during) >= 3, json.dumps([b.state for b in beats])  # 0.5 s beats over a 3 s step
        assert {b.info["step"] for b in during} == {"persistence.open"}
        running = [b.info["step_running_s"] for b in during]
        assert running == sorted(running) and running[-1] > 2.0
        assert [b.progress["step_beats"] for b in during] == sorted(b.progress["step_beats"] for b in during)
        status = wait_for(lambda: home.status(), 5, "orchestrator status")
        assert status["services"]["persistence"]["restarts"] == 0  # the watchdog saw it alive throughout
    finally:
        slow.kill()
        slow.wait(10)
        sub.close()
