"""The host agent (services/orchestrator/agent.py) under a real supervisord: the orchestrator's RemoteSupervisor reads
and restarts that host's programs through it, and nothing else; Supervisors routes each program to its host."""

from __future__ import annotations

import subprocess

import pytest
import zmq
from harness import VENV, Home, wait_for

from common import bus, messages
from common.messages import hosts as host_agent
from services.orchestrator.supervisor import RemoteSupervisor, Supervisor, Supervisors, SupervisorUnavailable

CONF = """
[unix_http_server]
file={root}/var/supervisor.sock
chmod=0700

[supervisord]
logfile={root}/var/log/supervisord.log
pidfile={root}/var/supervisord.pid
childlogdir={root}/var/log
directory={root}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[program:agent]
command={python} -m services.orchestrator.agent --host b
redirect_stderr=true
stdout_logfile={root}/var/log/agent.log
startsecs=0

[program:paper]
command=/bin/sleep 600
startsecs=0
stopwaitsecs=2

[program:other]
command=/bin/sleep 600
startsecs=0
stopwaitsecs=2
"""


@pytest.fixture
def host(tmp_path):
    agent = f"ipc://{tmp_path}/var/run/agent-b.rep"
    home = Home(tmp_path, {"orchestrator": {"remote_hosts": {"b": {"agent": agent, "programs": ["paper"]}}}})
    (tmp_path / "var" / "run").mkdir(parents=True, exist_ok=True)
    conf = tmp_path / "deploy" / "agent.conf"
    conf.write_text(CONF.format(root=tmp_path, python=VENV / "bin" / "python"))
    sup = subprocess.Popen([str(VENV / "bin" / "supervisord"), "-n", "-c", str(conf)], cwd=tmp_path, env=home.env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx = zmq.Context()
    remote = RemoteSupervisor(ctx, "b", agent, ["paper"], "test", timeout_ms=2000)
    try:
        wait_for(lambda: _pinged(ctx, agent), 20, "the agent up")
        yield home, remote, sup, ctx, agent
    finally:
        remote.close()
        if sup.poll() is None:
            sup.terminate()
            sup.wait(30)
        ctx.destroy(linger=0)


def _pinged(ctx: zmq.Context, endpoint: str) -> bool:
    req = bus.Requester(ctx, endpoint, "test", 500)
    try:
        return isinstance(req.call(messages.OP_PING.name, messages.NoArgs()), messages.Pong)
    except bus.RequestTimeout:
        return False
    finally:
        req.close()


def _paper(remote: RemoteSupervisor) -> dict:
    return remote.processes()["paper"]


def test_agent_reads_and_restarts_its_hosts_programs_only(host):
    home, remote, sup, ctx, agent = host
    procs = wait_for(lambda: (lambda p: p if p.get("paper", {}).get("statename") == "RUNNING" else None)(
        remote.processes()), 10, "paper RUNNING")
    assert set(procs) == {"paper"}  # not the agent itself, not `other`: not this host's programs in the config
    first = procs["paper"]["pid"]
    assert first > 0

    remote.kill("paper")  # the watchdog's restart: SIGKILL, supervisord's autorestart brings it back
    wait_for(lambda: (lambda p: p["statename"] == "RUNNING" and p["pid"] not in (0, first))(_paper(remote)), 10,
             "paper restarted")
    remote.stop("paper")
    wait_for(lambda: _paper(remote)["statename"] == "STOPPED", 10, "paper stopped")
    remote.start("paper")
    wait_for(lambda: _paper(remote)["statename"] == "RUNNING", 10, "paper started again")

    req = bus.Requester(ctx, agent, "test", 2000)
    try:
        for op, args, code in (
            (host_agent.OP_HOST_SIGNAL.name, host_agent.SignalArgs("other", "KILL"), "unknown_program"),
            (host_agent.OP_HOST_STOP.name, host_agent.ProgramArgs("agent"), "unknown_program"),
            (host_agent.OP_HOST_SIGNAL.name, host_agent.SignalArgs("paper", "HUP"), "bad_signal"),
        ):
            with pytest.raises(bus.RequestFailed) as refused:
                req.call(op, args)
            assert refused.value.code == code, refused.value
    finally:
        req.close()
    assert home.log("agent").count("signalled") == 1
    assert remote.req.call(host_agent.OP_HOST_PROCESSES.name, messages.NoArgs()).refused == {
        "unknown_program": 2, "bad_signal": 1}


def test_supervisors_route_each_program_to_its_host(host, tmp_path):
    home, remote, sup, ctx, agent = host
    wait_for(lambda: _paper(remote)["statename"] == "RUNNING", 10, "paper RUNNING")
    # this host's supervisord is absent here: its programs are unknown, the remote host's still seen
    both = Supervisors(Supervisor(tmp_path / "no-such.sock"), [remote])
    procs = both.processes()
    assert set(procs) == {"paper"} and len(both.errors) == 1 and "no supervisord socket" in both.errors[0]
    assert both.host_of("paper") == "b" and both.host_of("executor") == "local"
    first = procs["paper"]["pid"]
    both.kill("paper")  # to host b's agent
    wait_for(lambda: _paper(remote)["pid"] not in (0, first), 10, "paper restarted through the router")
    with pytest.raises(SupervisorUnavailable):
        both.kill("executor")  # this host's: no supervisord here

    with pytest.raises(SupervisorUnavailable, match="no supervisord socket"):
        both.shutdown()  # the remote host first (its agent answers, then its supervisord stops); this one is absent
    assert sup.wait(30) == 0


def test_an_unreachable_host_is_not_asked_at_every_poll(tmp_path):
    """A host whose agent does not answer blocks the orchestrator's loop for a request's timeout: it is asked again
    only after REMOTE_RETRY_S, and named in the errors meanwhile."""
    ctx = zmq.Context()
    silent = RemoteSupervisor(ctx, "b", f"ipc://{tmp_path}/nobody.rep", ["paper"], "test", timeout_ms=100)
    both = Supervisors(Supervisor(tmp_path / "no-such.sock"), [silent])
    try:
        for _ in range(3):
            with pytest.raises(SupervisorUnavailable, match="host b agent"):
                both.processes()  # no host answered
        assert silent.req.resets == 1  # one request timed out; the later polls did not ask
        assert any("host b agent" in e for e in both.errors)
    finally:
        silent.close()
        ctx.destroy(linger=0)
