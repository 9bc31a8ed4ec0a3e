"""Roles on the wire, against the whole system under the real supervisord: a peer that may not call an op (a process
that looks like paper; a script of the system's user, the operator, for a hello) sends the calls the issue found
trusted -- a hello claiming paper with a fake pid and a huge epoch (and a failed ``ready`` for it), ``step``
executor.stop and connector.disconnect, the orchestrator's ``stop`` and ``clear_halt``, the connector's orders, the
executor's commands. Each is answered ``forbidden``, counted in the service's status and alerted (on the bus, and in
the store), and nothing changes: the system stays RUNNING, no order reaches the broker, the real paper is not locked
out (restarted, it is heard again). The operator (`oracle ctl`) still can."""

from __future__ import annotations

import json
import time

import pytest
from harness import Home, wait_for
from system.impostor import LOOKS_LIKE_PAPER, OPERATOR_SCRIPT, Identity, send
from system.trading_rig import Listener, cleanup, symbols_config

from common import messages, roles
from services.connector.sim.control import control

pytestmark = pytest.mark.slow

OVERLAY = {
    "broker": {"sim": {"speed": 0}},  # the market does not move: any order would be the impostor's
    "runtime": {"request_timeout_ms": 5000},
    "orchestrator": {"heartbeat_timeout_s": 10.0, "step_timeout_s": 60},
}


@pytest.fixture
def system(tmp_path):
    pytest.importorskip("torch")
    home = Home(tmp_path, OVERLAY)
    symbols_config(home)
    home.start_supervisord()
    try:
        home.wait_state(messages.RUNNING, timeout=180)
        yield home
    finally:
        home.close()


def spoofs(home: Home) -> list[tuple[str, str, dict]]:
    """(endpoint, op, args): every call the issue found answered from any peer."""
    cfg = home.config()
    orch, executor, connector = (cfg.endpoint(s, "rep") for s in ("orchestrator", "executor", "connector"))
    order = {"symbol": "EURUSD", "direction": 1, "lots": 0.01, "client_order_id": "spoof-open-1"}
    return [
        (executor, "step", {"step": "executor.stop"}),
        (connector, "step", {"step": "connector.disconnect"}),
        (orch, "stop", {"reason": "spoof"}),
        (orch, "clear_halt", {}),
        (connector, "order_open", order),
        (connector, "order_close", {"ticket": 1}),
        (connector, "order_amend", {"ticket": 1, "sl": 1.0}),
        (executor, "command", {"name": "pause", "args": {}}),
        (executor, "command", {"name": "close_all", "args": {}}),
    ]


def hellos(home: Home, pid: int | str) -> list[tuple[str, str, dict]]:
    """Four hellos claiming paper (four made the system HALTED before roles): a fake pid and a huge epoch, then
    a pid and an epoch that could be the sender's own (still not the process supervisord runs as paper)."""
    orch = home.config().endpoint("orchestrator", "rep")
    now = time.time_ns()
    return [(orch, "hello", {"service": "paper", "pid": pid, "epoch": epoch, "version": "spoof"})
            for epoch in (2**62, 2**62 + 1, now, now + 1)]


def refused(answers: list) -> bool:
    return all(isinstance(a, list) and a[0] == roles.FORBIDDEN for a in answers)


def ctl(home: Home, *argv: str) -> dict:
    res = home.oracle("ctl", *argv, "--json", "--timeout-ms", "10000")
    assert res.returncode == 0, (argv, res.stdout, res.stderr)
    return json.loads(res.stdout)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("impostor", [LOOKS_LIKE_PAPER], ids=lambda i: i.name)
def test_spoofed_calls_are_refused_alerted_and_change_nothing(system: Home, impostor: Identity):
    home = system
    sim = home.config().broker.sim.control_port
    alerts = {s: Listener(home, s, ("alert.",)) for s in ("orchestrator", "executor", "connector")}
    try:
        for listener in alerts.values():
            listener.wait_live(30)
        before = home.status()
        paper = before["services"]["paper"]
        deals = control(sim, "deals")["deals"]
        positions = control(sim, "status")["positions"]

        pid, answers = send(impostor, spoofs(home), home.env)
        assert refused(answers), answers
        _, hello_answers = send(impostor, hellos(home, 4_000_000), home.env)  # a pid no process has
        assert refused(hello_answers), hello_answers
        assert "ahead of this host's clock" in hello_answers[0][1]
        _, own_pid_hellos = send(impostor, hellos(home, "SELF")[2:], home.env)
        assert refused(own_pid_hellos) and "supervisord runs as pid" in own_pid_hellos[0][1], own_pid_hellos
        # a failed step reported for paper's current process would alert and record step_failed
        failed = {"service": "paper", "epoch": paper["epoch"], "step": "paper.warmup", "ok": False, "error": "spoof"}
        _, ready_answers = send(impostor, [(home.config().endpoint("orchestrator", "rep"), "ready", failed)], home.env)
        assert refused(ready_answers) and "not its process" in ready_answers[0][1], ready_answers
        _, script_hellos = send(OPERATOR_SCRIPT, hellos(home, 4_000_000), home.env)  # the operator is no service
        assert refused(script_hellos) and "may be called by the service itself" in script_hellos[0][1], script_hellos

        # counted by each service, per (op, caller)
        name = impostor.name
        assert {f"step {name}", f"command {name}"} <= set(home.status_of("executor")["refused"])
        assert {f"{op} {name}" for op in ("step", "order_open", "order_close", "order_amend")} \
            <= set(home.status_of("connector")["refused"])
        orch_refused = home.status()["refused"]
        assert orch_refused[f"hello {name}"] == 6 and orch_refused["hello operator"] == 4
        assert orch_refused[f"stop {name}"] == orch_refused[f"clear_halt {name}"] == orch_refused[f"ready {name}"] == 1

        # alerted on the bus, naming the caller and its pid
        for service, listener in alerts.items():
            heard = wait_for(lambda lst=listener: [a for a in lst.poll() if isinstance(a, messages.Alert)
                                                   and a.kind == "forbidden"], 20, f"{service}'s alert")
            assert all(a.details["caller"] in (name, "operator") for a in heard)
            assert any(a.details["pid"] == pid for a in heard), heard
        # and in the store (persistence stores every service's alerts it hears)
        wait_for(lambda: any("refused" in (r.get("message") or "") and r.get("source") == "connector"
                             for r in home.request("persistence", "query",
                                                   messages.QueryArgs("events", {}, 0)).records),
                 20, "the connector's refusal in the store")

        # nothing changed: the state, the processes, the broker, the real paper's standing
        after = home.status()
        assert after["system"] == messages.RUNNING
        assert after["services"]["paper"]["epoch"] == paper["epoch"]
        assert after["services"]["paper"]["pid"] == paper["pid"]
        changes = ("restart", "halt", "stopping", "respawn", "step_failed")
        assert not [e for e in after["boot_log"] if e["event"] in changes]
        assert after["services"]["paper"]["restarts"] == before["services"]["paper"]["restarts"]
        executor = ctl(home, "executor-status")["reply"]
        assert not executor["stopped"] and not executor["paused"]
        assert home.status_of("connector")["broker"]["connected"]
        assert control(sim, "deals")["deals"] == deals and control(sim, "status")["positions"] == positions

        # the real paper, restarted, says hello with its new epoch and is heard (no 'stale_epoch' lockout)
        home.supervisorctl("restart", "paper")
        new_pid = home.pid_of("paper")
        assert new_pid and new_pid != paper["pid"]
        wait_for(lambda: (lambda s: s["services"]["paper"]["pid"] == new_pid and s["system"] == messages.RUNNING)(
            home.status()), 120, "the restarted paper heard and the system RUNNING")

        # the operator still can: pause and resume through oracle ctl
        assert ctl(home, "pause")["reply"]["paused"] is True
        assert ctl(home, "resume")["reply"]["paused"] is False
    finally:
        cleanup(*alerts.values())
