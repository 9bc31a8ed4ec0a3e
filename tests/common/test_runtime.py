"""The runtime in a real process: heartbeats keep going while a long lifecycle step runs; the answer to a request
of the service's own wakes its loop; records handed over in several loop passes leave for persistence together."""

import json
import signal
import subprocess
import sys
import time

import pytest
import zmq
from harness import Home, free_port, wait_for

from common import bus, messages

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


ASKING_SERVICE = """
import sys
from common import bus, messages, runtime

class Asking(runtime.Service):
    name = "paper"
    line = None

    def ops(self):
        return {"step": self._ask}  # a registered op (any would do): the test asks it to send its request

    def _ask(self, _args):
        self.line = bus.Requester(self.ctx, sys.argv[1], self.name, 60_000)
        self.line.send("ping", None)
        return messages.StepResult("ask", True)

    def awaited_sockets(self):
        return [self.line.sock] if self.line is not None and self.line.pending is not None else []

    def poll_timeout_ms(self):
        return 30_000  # asleep unless a socket wakes it

    def on_tick(self, now):
        if self.line is not None and self.line.pending is not None and self.line.take_reply() is not None:
            self.publish(messages.alert_topic("answered"), messages.Alert("answered", "info", "", self.name, {}))

raise SystemExit(runtime.main(Asking, sys.argv[2:]))
"""


def as_persistence(home) -> dict:
    """A `python -c` service says hello to the orchestrator as persistence: it must look like it (as supervisord's
    program would; common/peer.py), or its hello is refused (common/roles.py)."""
    return {**home.env, "SUPERVISOR_PROCESS_NAME": "persistence"}


SLEEPY_SERVICE = """
from common import runtime

class Sleepy(runtime.Service):
    name = "persistence"
    idle_poll_ms = None  # no short poll: only the runtime's own deadlines wake it
    subscribe_to = {}  # nor the orchestrator's sys.state messages

    def on_step(self, step, args):
        return {}

raise SystemExit(runtime.main(Sleepy, []))
"""


GATHERING_SERVICE = """
from common import messages, runtime

class Keeping(runtime.Service):
    name = "paper"
    outbox_quiet_ms = outbox_linger_ms = 600_000  # only a full batch leaves (within the test)

    def __init__(self, cfg, dry_run=False):
        super().__init__(cfg, dry_run)
        self.outbox.max_batch = 4

    def ops(self):
        return {"step": self._keep}  # a registered op: each request hands over one record, in a loop pass of its own

    def _keep(self, args):
        self.persist("events", {"id": args.step})
        return messages.StepResult(args.step, True)

raise SystemExit(runtime.main(Keeping, []))
"""


TELLING_SERVICE = """
from common import messages, runtime

class Telling(runtime.Service):
    name = "persistence"
    news = "none"

    def ops(self):
        return {"step": self._tell}  # a registered op: the test changes what the heartbeat says

    def _tell(self, args):
        self.news = args.step
        self.beat_soon()
        return messages.StepResult(args.step, True)

    def health_info(self):
        return {"news": self.news}

raise SystemExit(runtime.main(Telling, []))
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
    slow = subprocess.Popen([sys.executable, "-c", SLOW_SERVICE], env=as_persistence(home), cwd=home.root)
    try:
        beats = []

        def after_the_step() -> list:
            """The beats once the step is over (the service waits for the services not started then): the step's
            STEP beats, then two more, past the orchestrator's 3 s heartbeat timeout counted from the step's start."""
            first = next((i for i, b in enumerate(beats) if b.state == "STEP"), None)
            return [] if first is None else [b for b in beats[first:] if b.state != "STEP"]

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(after_the_step()) < 2:
            if sub.sock.poll(200):
                beats += [r.envelope.body for r in sub.drain()]
        assert len(after_the_step()) >= 2, json.dumps([b.state for b in beats])  # the step ended, beats went on
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


def test_the_answer_to_a_request_in_flight_wakes_the_loop(home):
    """A service sends a request of its own and sleeps (30 s poll); the answer, given later, wakes it at once."""
    ctx = zmq.Context.instance()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    peer = bus.Responder(ctx, endpoint, {"ping": lambda _a: messages.Pong("peer", 1)}, bus.WireErrors("t"))
    sub = bus.Subscriber(ctx, [home.config().endpoint("paper", "pub")], ["alert.answered"], bus.WireErrors("t"))
    asking = subprocess.Popen([sys.executable, "-c", ASKING_SERVICE, endpoint], env=home.env, cwd=home.root)
    try:
        wait_for(lambda: home.request("paper", "ping"), 20, "the service up")
        home.request("paper", "step", messages.StepArgs("ask"))
        assert peer.sock.poll(5000), "the service's request did not arrive"
        time.sleep(0.5)  # the service's loop is asleep again, in its 30 s poll
        assert peer.serve_ready() == 1
        assert sub.sock.poll(5000), "the answer did not wake the loop"  # well before its poll's 30 s
        assert [r.envelope.body.kind for r in sub.drain()] == ["answered"]
    finally:
        asking.kill()
        asking.wait(10)
        sub.close()
        peer.sock.close()


def test_a_service_without_a_short_poll_still_shakes_hands_and_beats_on_the_heartbeat(home):
    """The loop sleeps until the runtime's next deadline (hello, the reply's timeout, the next heartbeat), not an
    hour: the service gets through the handshake's first step (the rest waits for services not started) and beats
    every interval while it waits, asking again."""
    cfg = home.config()
    ctx = zmq.Context.instance()
    sub = bus.Subscriber(ctx, [cfg.endpoint("persistence", "pub")], ["hb.persistence"], bus.WireErrors("t"))
    sleepy = subprocess.Popen([sys.executable, "-c", SLEEPY_SERVICE], env=as_persistence(home), cwd=home.root)
    try:
        time.sleep(0.5)  # started before the orchestrator: its hellos go unanswered (timeouts), then are asked again
        home.start("orchestrator")
        stepped = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(stepped) < 4:
            if sub.sock.poll(200):
                stepped += [r.envelope.body for r in sub.drain() if r.envelope.body.steps]
        assert len(stepped) >= 4, [b.state for b in stepped]  # 0.5 s beats after its first step
        assert stepped[0].steps == ["persistence.open"] and all(b.rss_bytes > 0 for b in stepped)
    finally:
        sleepy.kill()
        sleepy.wait(10)
        sub.close()


def test_records_handed_over_in_several_loop_passes_leave_in_one_write_request(home):
    """Each record is handed over in a loop pass of its own (one request each); none leaves before the batch is
    full (the quiet time and the linger are long here), then all of them in one write request."""
    ctx = zmq.Context.instance()
    writes: list[messages.WriteArgs] = []

    def write(args: messages.WriteArgs) -> messages.WriteResult:
        writes.append(args)
        return messages.WriteResult([r["id"] for records in args.tables.values() for r in records])

    cfg = home.config()
    cfg.path(cfg.run_dir).mkdir(parents=True, exist_ok=True)  # the ipc endpoints' folder (a service makes it)
    store = bus.Responder(ctx, cfg.endpoint("persistence", "rep"), {"write": write}, bus.WireErrors("t"))
    keeping = subprocess.Popen([sys.executable, "-c", GATHERING_SERVICE], env=home.env, cwd=home.root)
    try:
        wait_for(lambda: home.request("paper", "ping"), 20, "the service up")
        for i in range(3):
            home.request("paper", "step", messages.StepArgs(f"r{i}"))
        assert store.sock.poll(0) == 0  # answered: the loop passes that kept them did not send them
        home.request("paper", "step", messages.StepArgs("r3"))
        assert store.sock.poll(20_000), "the full batch did not leave"
        assert store.serve_ready() == 1
        got = [{t: [r["id"] for r in rs] for t, rs in w.tables.items()} for w in writes]
        assert got == [{"events": ["r0", "r1", "r2", "r3"]}]
    finally:
        keeping.kill()
        keeping.wait(10)
        store.sock.close()


def test_a_quiet_service_stops_at_once_on_sigterm(tmp_path):
    """supervisord's stop (SIGTERM) wakes a loop that sleeps until its next deadline (here a minute away: no
    orchestrator answers, hellos and beats are a minute apart): the signal writes to a pipe the loop polls, so the
    service stops now, not at that deadline."""
    quiet = {"runtime": {"heartbeat_interval_s": 60.0, "hello_interval_s": 60.0, "request_timeout_ms": 60_000}}
    home = Home(tmp_path, quiet)
    log_path = tmp_path / "sleepy.log"
    try:
        with open(log_path, "wb") as out:
            sleepy = subprocess.Popen([sys.executable, "-c", SLEEPY_SERVICE], env=as_persistence(home),
                                      cwd=home.root, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: b"persistence started" in log_path.read_bytes(), 20, "the service's start")
            time.sleep(0.3)  # asleep in its poll (its first hello is out, its answer a minute away)
            sleepy.send_signal(signal.SIGTERM)
            assert sleepy.wait(20) == 0  # a minute without the wake-up pipe
            assert b"persistence stopped" in log_path.read_bytes()
        finally:
            if sleepy.poll() is None:
                sleepy.kill()
                sleepy.wait(10)
    finally:
        home.close()


def test_a_fact_of_the_heartbeat_that_changed_is_beaten_at_once(tmp_path):
    """`beat_soon`: the next heartbeat goes at the loop's next turn, not a heartbeat interval (here a minute) later;
    the connector calls it when its broker connection changes, so the orchestrator's health says so at once."""
    home = Home(tmp_path, {"runtime": {"heartbeat_interval_s": 60.0}})
    ctx = zmq.Context.instance()
    cfg = home.config()
    sub = bus.Subscriber(ctx, [cfg.endpoint("persistence", "pub")], ["hb.persistence"], bus.WireErrors("t"))
    telling = subprocess.Popen([sys.executable, "-c", TELLING_SERVICE], env=as_persistence(home), cwd=home.root)
    try:
        wait_for(lambda: home.request("persistence", "ping"), 20, "the service up")
        heard: list = []
        deadline = time.monotonic() + 20  # well inside the minute to the next regular beat (its first was at start)
        while time.monotonic() < deadline and not any(b.info.get("news") == "reconnected" for b in heard):
            # told again each second: the SUB's subscription may reach the PUB after the first beat_soon's beat
            home.request("persistence", "step", messages.StepArgs("reconnected"))
            if sub.sock.poll(1000):
                heard += [r.envelope.body for r in sub.drain()]
        assert any(b.info.get("news") == "reconnected" for b in heard), [b.info for b in heard]
    finally:
        telling.kill()
        telling.wait(10)
        sub.close()
        home.close()
