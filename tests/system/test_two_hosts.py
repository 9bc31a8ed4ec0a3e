"""The system across two hosts (deploy/two-host/): two network namespaces joined by a veth pair (netns_rig.py), host A
(198.18.0.1: simulator, connector, executor, persistence, orchestrator) and host B (198.18.0.2: preditor, paper, the
host agent), each with its own supervisord and its own var/, every endpoint tcp:// over the pair, CURVE on.

It trades through a replay with the preditor's signals equal to the backtest bar for bar, across a kill -9 on each
host and a hung service on host B that the orchestrator restarts through host B's agent; a client with a key nobody
knows gets nothing; and a capture of every frame on the veth finds none of our topics, symbols or envelope keys.

ORACLE_TWO_HOSTS_WIRE=plain runs it without CURVE (the wire before keys existed): then the same capture must FIND
them, which is the capture's positive control. test_capture_sees_plaintext_across_the_pair checks the capture alone.
"""

from __future__ import annotations

import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import yaml
import zmq
from harness import REPO, VENV, Home, free_port, wait_for
from system.netns_rig import ADDR_A, ADDR_B, Capture, HostPair, InNs, Supervisord, plaintext, require_root_and_ip
from system.sub_reader import SubReader
from system.trading_rig import Listener, symbols_config

from common import bus, config, messages, wire

pytestmark = pytest.mark.slow

WIRE = os.environ.get("ORACLE_TWO_HOSTS_WIRE", "curve")  # "plain": before CURVE; the capture must find plaintext
START_BAR = 1100
WARMUP = 1000
TWO_HOST = REPO / "deploy" / "two-host"
HOST_A = ("connector", "persistence", "executor", "orchestrator")
HOST_B = ("preditor", "paper")
AGENT = "agent"  # host B's agent program, and its key's name


def needles() -> list[bytes]:
    """What must never cross the wire readable: the real topics, the symbol, op names and our envelope's keys."""
    topics = [messages.signal_topic("EURUSD"), messages.ack_topic("EURUSD"), messages.bar_topic("EURUSD", "H1"),
              messages.paper_metrics_topic("EURUSD"), messages.SYS_STATE_TOPIC,
              *(messages.hb_topic(s) for s in config.SERVICES)]
    ops = ["hello", "ready", "last_signals", "signals_since", "history", "host_processes", "status"]
    keys = [msgpack.packb(k) for k in ("epoch", "body", "type", "src", "seq", "args")]
    return [t.encode() for t in topics] + [b"EURUSD"] + [msgpack.packb(o) for o in ops] + keys


def sim_bars() -> np.ndarray:
    """The EURUSD H1 bars the simulator serves, one per CSV bar, as the twin's (n, 6) array."""
    from services.connector.sim.catalog import CATALOG
    from services.connector.sim.replay import parse_csv
    from services.connector.sim.series import served_bars

    source = parse_csv((REPO / "data" / "EURUSD_H1_2017.csv").read_text())
    served = served_bars(source, CATALOG["EURUSD"], "H1", source[0].time, source[-1].time + 3600)
    return np.array([[b.time, b.open, b.high, b.low, b.close, b.volume] for b in served])


@pytest.fixture
def pair():
    require_root_and_ip()
    hosts = HostPair()
    try:
        try:
            hosts.up()
        except RuntimeError as exc:  # e.g. a container without the right to make namespaces
            if os.environ.get("CI") == "true":
                raise
            pytest.skip(f"cannot make network namespaces here: {exc}")
        yield hosts
    finally:
        hosts.down()


# ---- the capture's positive control --------------------------------------------------------------------------


def test_capture_sees_plaintext_across_the_pair(pair):
    """A plaintext PUB on host B, a SUB on host A: the capture on A's veth end finds the topic, symbol and keys (so
    the two-host test's "nothing found" cannot pass by capturing nothing)."""
    in_a, in_b = InNs(pair.a), InNs(pair.b)
    ctx_a, ctx_b = in_a.zmq_context(), in_b.zmq_context()
    capture = Capture(pair.a, pair.veth_a, max_s=60)
    endpoint = f"tcp://{ADDR_B}:{free_port()}"
    pub = in_b.run(bus.Publisher, ctx_b, endpoint, "preditor", bus.new_epoch())  # a bind: made in B
    got: list[bus.Received] = []
    reader = SubReader([endpoint], ["signal."], lambda g, _t: got.extend(g), ctx_a)
    try:
        sig = messages.Signal("EURUSD", 1_500_000_000, 1.1, 1, 1, 1, 0, 0.0)
        wait_for(lambda: pub.publish(messages.signal_topic("EURUSD"), sig) and got, 10, "the signal across the pair")
    finally:
        reader.close()
        pub.close()
        captured = capture.stop()
        ctx_a.destroy(linger=0)
        ctx_b.destroy(linger=0)
        in_a.close()
        in_b.close()
    found = plaintext(captured, needles())
    assert captured.frames > 0 and not captured.truncated
    assert {b"signal.EURUSD", b"EURUSD", msgpack.packb("epoch"), msgpack.packb("body")} <= set(found), found


# ---- the system on two hosts -----------------------------------------------------------------------------------


@dataclass
class Rig:
    pair: HostPair
    a: Home
    b: Home
    in_a: InNs
    ctx: zmq.Context
    capture: Capture
    keys: Path | None
    supervisords: list[Supervisord]

    def sim(self, cmd: str, **args: Any) -> dict:
        from services.connector.sim.control import control

        return self.in_a.run(control, self.a.config().broker.sim.control_port, cmd, **args)

    def service(self, name: str) -> dict:
        return self.a.status()["services"][name]


def overlay(curve: bool) -> dict:
    """deploy/two-host/overlay.yaml (the addresses are the pair's), with the test's clock and replay."""
    two = yaml.safe_load((TWO_HOST / "overlay.yaml").read_text())
    assert two["endpoints"]["connector"]["rep"].startswith(f"tcp://{ADDR_A}:")
    assert two["endpoints"]["preditor"]["rep"].startswith(f"tcp://{ADDR_B}:")
    if not curve:
        del two["wire"]
    test = {"broker": {"sim": {"speed": 0, "start_bar": START_BAR, "control_port": 5045, "port": 5035}},
            "preditor": {"warmup_bars": WARMUP},
            "runtime": {"request_timeout_ms": 5000},
            "orchestrator": {"heartbeat_timeout_s": 5.0, "step_timeout_s": 60},
            "connector": {"account_interval_s": 1.0}}
    return config.merge(two, test)


def host_home(root: Path, curve: bool) -> Home:
    home = Home(root, overlay(curve))
    shutil.copytree(TWO_HOST, root / "deploy" / "two-host")
    symbols_config(home, enter_on_first_signal=True)
    return home


def deal_keys(master: Path, home: Home, own: tuple[str, ...]) -> None:
    """A host's keys directory (wire.keys_dir): every public key, and the secrets of its own programs only."""
    cfg = home.config()
    keys_dir = cfg.path(cfg.wire.keys_dir)
    keys_dir.mkdir(parents=True, mode=0o700)
    for public in master.glob("*.key"):
        shutil.copy(public, keys_dir)
    for name in own:
        shutil.copy(master / f"{name}.key_secret", keys_dir)
        (keys_dir / f"{name}.key_secret").chmod(0o600)


def secure_test_process(master: Path, cfg: config.Config) -> None:
    """The test's own sockets: the operator's key (common/keys.py, bus.secure)."""
    from common import keys

    keyring = keys.load(master, keys.OPERATOR)
    bus.secure(keyring, keys.OPERATOR, keys.server_keys(cfg, keyring))


@pytest.fixture
def two_hosts(pair, tmp_path):
    pytest.importorskip("torch")
    curve = WIRE != "plain"
    a, b = host_home(tmp_path / "a", curve), host_home(tmp_path / "b", curve)
    a.config()  # the layout's configuration is valid here (else the ConfigError says why, before anything starts)
    master = None
    if curve:
        from common import keys

        master = tmp_path / "keys"
        keys.init(master, keys.names([*config.SERVICES, AGENT]))
        deal_keys(master, a, HOST_A)
        deal_keys(master, b, (*HOST_B, AGENT))
        secure_test_process(master, a.config())
    capture = Capture(pair.a, pair.veth_a, max_s=900)
    sups: list[Supervisord] = []
    in_a = InNs(pair.a)
    ctx = in_a.zmq_context()
    a.ctx = ctx  # every request and tap of the test: from host A's namespace
    try:
        for home, ns, conf in ((b, pair.b, "host-b.conf"), (a, pair.a, "host-a.conf")):
            sups.append(Supervisord(pair, ns, home.root, home.root / "deploy" / "two-host" / conf, home.env, VENV))
        yield Rig(pair, a, b, in_a, ctx, capture, master, sups)
    finally:
        capture.stop()
        for sup in reversed(sups):  # host A's first: its orchestrator restarts nothing while the rest stops
            sup.stop()
        if curve:
            bus.release(ctx)
            bus.plain()
        ctx.destroy(linger=0)
        in_a.close()


def test_system_across_two_hosts_trades_heals_and_shows_nothing_on_the_wire(two_hosts):
    rig = two_hosts
    home = rig.a
    status = home.wait_state("RUNNING", timeout=150)
    # host B's programs as host B's supervisord sees them, through its agent: RUNNING once past their startsecs (the
    # handshakes may end before; the orchestrator asks supervisord's view every second until it agrees)
    assert status["supervisor"] == "ok", status["supervisor"]
    status = wait_for(lambda: (lambda s: s if all(s["services"][n]["supervisor_state"] == "RUNNING" for n in HOST_B)
                               else None)(home.status()), 30, "host B's programs RUNNING in supervisord's view")
    assert status["supervisor"] == "ok", status["supervisor"]

    bars = sim_bars()
    signals: dict[int, messages.Signal] = {}
    duplicates: list[messages.Signal] = []

    beats: set[int] = set()

    def take(got: list[bus.Received], _now: float) -> None:
        for r in got:
            s = r.envelope.body
            if isinstance(s, messages.Heartbeat):
                beats.add(s.epoch)
            if isinstance(s, messages.Signal):
                (duplicates.append(s) if s.bar_time in signals else None)
                signals[s.bar_time] = s

    tap = SubReader([home.config().endpoint("preditor", "pub")], ["signal.", "hb.preditor"], take, rig.ctx)
    acks = Listener(home, "executor", ("ack.",))
    dead: set[int] = set()
    try:
        def advance(n: int, wait: bool = True) -> None:
            for _ in range(n):
                i = rig.sim("status")["bar_index"]
                rig.sim("advance", bars=1)
                t = int(bars[i, 0])
                if wait:
                    wait_for(lambda t=t: t in signals, 30, f"the signal of bar {t}")
                else:
                    dead.add(t)

        def back(name: str, old_pid: int) -> dict:
            return wait_for(lambda: (lambda s: s if s["state"] == "RUNNING" and s["pid"] not in (0, old_pid)
                                     and s["supervisor_state"] == "RUNNING" else None)(rig.service(name)),
                            90, f"{name} back")

        # our SUB's subscription reached the preditor's PUB (the slow joiner): its heartbeats are heard
        wait_for(lambda: beats, 30, "a heartbeat of the preditor")
        advance(6)

        # kill -9 on host B: supervisord B restarts it, the orchestrator re-handshakes it over the pair
        victim = rig.service("preditor")
        os.kill(victim["pid"], signal.SIGKILL)
        advance(2, wait=False)
        back("preditor", victim["pid"])
        for t in dead:
            wait_for(lambda t=t: t in signals, 30, f"the catch-up signal of bar {t}")
        advance(4)

        # kill -9 on host A
        victim = rig.service("executor")
        os.kill(victim["pid"], signal.SIGKILL)
        back("executor", victim["pid"])
        acks.wait_live(30)
        advance(4)

        # a hung service on host B: the orchestrator's watchdog kills it through host B's agent
        victim = rig.service("paper")
        os.kill(victim["pid"], signal.SIGSTOP)
        healed = back("paper", victim["pid"])
        assert healed["last_restart_reason"], healed
        advance(3)
        last = rig.sim("status")["bar_index"] - 1
        # it traded: every live signal is acked (a catch-up one is recorded, the latest position acted on), and
        # orders reached the broker on host A
        for t in sorted(t for t, s in signals.items() if not s.catch_up):
            acks.wait_ack(t, timeout=20)
        opened = [a for a in acks.poll() if isinstance(a, messages.Ack) and a.details.get("action") == "OPEN"]
        assert opened and all(a.status == "OK" for a in opened), opened
        assert any(not d["closing"] for d in rig.sim("deals")["deals"])

        if rig.keys is not None:
            assert_unknown_key_refused(rig)

        state = home.wait_state("RUNNING", timeout=30)
        assert all(state["services"][s]["restarts"] >= 1 for s in ("preditor", "executor", "paper")), state
        assert state["supervisor"] == "ok", state["supervisor"]

        # the system's stop (`oracle ctl stop`): the shutdown steps, then both supervisords, host B's through its agent
        home.request("orchestrator", "stop", messages.StopArgs("MANUAL"))
        wait_for(lambda: all(s.proc.poll() is not None for s in rig.supervisords), 60, "both supervisords gone")
    finally:
        tap.close()
        acks.close()
        captured = rig.capture.stop()

    # the preditor's signals equal the backtest's, bar for bar (the twin starts flat at the first warmup bar)
    import torch

    from services.preditor import backtest
    from services.preditor.model_file import load_model

    torch.set_num_threads(1)
    exp = {int(d.bar_time): d for d in backtest.replay(load_model(str(REPO / "models" / "EURUSD_H1.zip")),
                                                        bars[START_BAR - WARMUP: last + 1])}
    live = {int(t) for t in bars[START_BAR: last + 1, 0]}
    assert set(signals) == live, (sorted(live - set(signals))[:5], sorted(set(signals) - live)[:5])
    assert all(s.catch_up for s in duplicates), duplicates  # a bar decided again at the restart, if any
    for t, sig in signals.items():
        d = exp[t]
        assert (sig.action, sig.direction, sig.intensity, sig.hmm_state) == (
            int(d.action), d.direction, d.intensity, d.hmm_state), f"bar {t}"
        assert abs(sig.virtual_pnl - d.floating_pnl) <= 1e-9, f"bar {t}"
    assert all(signals[t].catch_up for t in dead)
    # the capture: it saw the traffic; with CURVE none of it is readable, without it (the control) it is
    assert captured.tcp_bytes > 20_000 and not captured.truncated, (captured.frames, captured.tcp_bytes)
    found = plaintext(captured, needles())
    if rig.keys is None:
        assert {b"signal.EURUSD", b"EURUSD", b"hb.preditor"} <= set(found), found
    else:
        assert not found, found


def assert_unknown_key_refused(rig: Rig) -> None:
    """A client with a key nobody was given, knowing the server's public key, gets no answer from a service on the
    other host (the ZAP handler refuses the handshake)."""
    import zmq.auth

    server_public, _ = zmq.auth.load_certificate(str(rig.keys / "preditor.key"))  # the master keys directory
    public, secret = zmq.curve_keypair()
    sock = rig.ctx.socket(zmq.REQ)
    sock.linger = 0
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server_public
    try:
        sock.connect(rig.a.config().endpoint("preditor", "rep"))
        sock.send(wire.encode_request("status", "stranger-1", messages.NoArgs()))
        assert sock.poll(3000) == 0, "a client with an unknown key got an answer"
    finally:
        sock.close()
    denied = wait_for(lambda: rig.a.status_of("preditor")["wire_errors"].get("curve_denied", 0), 10,
                      "the preditor counting the denied handshake")
    assert denied >= 1
