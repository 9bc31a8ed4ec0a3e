"""The lifecycle with real processes over real ipc sockets (no supervisord: started directly)."""

from __future__ import annotations

import random
import subprocess
import sys
import time

import msgpack
import pytest
import zmq
from harness import Home, wait_for

from common import config, failure, wire
from services.orchestrator import plan

WORKERS = list(config.WORKERS)


@pytest.fixture
def home(tmp_path):
    h = Home(tmp_path)
    yield h
    h.close()


def boot(home: Home, order: list[str], gap_s: float = 0.0) -> dict:
    for service in order:
        home.start(service)
        if gap_s:
            time.sleep(gap_s)
    return home.wait_state("RUNNING", timeout=30)


def assert_boot_order_respected(boot_log: list[dict]) -> None:
    ready_at: dict[str, int] = {}
    gone: set[str] = set()  # a go may be repeated when its reply timed out under load: the rule holds for each
    for e in boot_log:
        if e["event"] == "ready":
            ready_at.setdefault(e["step"], e["ts"])
        elif e["event"] == "go":
            step = next(s for s in plan.BOOT if s.name == e["step"])
            for need in step.needs:
                assert need in ready_at and ready_at[need] <= e["ts"], f"{e['step']} got go before {need} was ready"
            gone.add(e["step"])
    assert gone == {s.name for s in plan.BOOT}
    assert set(ready_at) == {s.name for s in plan.BOOT}


@pytest.mark.parametrize(
    "order",
    [
        [*reversed(WORKERS), "orchestrator"],  # everyone waits for a late orchestrator, reverse order
        random.Random(7).sample(["orchestrator", *WORKERS], 6),
    ],
    ids=["reverse-orchestrator-last", "shuffled"],
)
def test_boot_order_holds_whatever_starts_first(home, order):
    assert_booted(home, boot(home, order, gap_s=0.3))


def assert_booted(home: Home, status: dict) -> None:
    assert_boot_order_respected(status["boot_log"])
    for name in WORKERS:
        s = status["services"][name]
        assert s["state"] == "RUNNING" and s["pid"] == home.procs[name].pid
        assert set(s["steps"]) == {st.name for st in plan.steps_of(name)}


def test_restarted_service_is_rehandshaken_and_dependents_react(home):
    boot(home, ["orchestrator", *WORKERS])
    before = home.status()["services"]
    sync_runs = home.status_of("executor")["steps"]
    assert "executor.sync" in sync_runs

    home.kill("connector")
    home.start("connector")
    status = wait_for(
        lambda: (lambda s: s if s["system"] == "RUNNING" and s["services"]["connector"]["restarts"] == 1 else None)(
            home.status()
        ),
        20,
        "RUNNING with one connector restart",
    )
    con = status["services"]["connector"]
    assert con["epoch"] > before["connector"]["epoch"] and con["pid"] == home.procs["connector"].pid
    log = status["boot_log"]
    restart_at = next(i for i, e in enumerate(log) if e["event"] == "restart" and e["service"] == "connector")
    after = log[restart_at:]
    reacted = {(e["service"], e["step"]) for e in after if e["event"] == "react"}
    assert reacted == set(plan.REACT["connector"])
    redone = {(e["service"], e["step"]) for e in after if e["event"] == "ready"}
    assert ("connector", "connector.connect") in redone and set(plan.REACT["connector"]) <= redone
    # the dependents were told, not restarted
    for name in ("executor", "preditor", "paper"):
        assert status["services"][name]["epoch"] == before[name]["epoch"]
        assert status["services"][name]["restarts"] == 0


def test_orchestrator_restart_rediscovers_without_disturbing(home):
    boot(home, ["orchestrator", *WORKERS])
    epochs = {s: home.status_of(s)["epoch"] for s in WORKERS}
    home.kill("orchestrator")
    time.sleep(1.5)
    for s in WORKERS:  # trading goes on without the orchestrator
        assert home.procs[s].poll() is None
        assert home.status_of(s)["state"] == "RUNNING"
    home.start("orchestrator")
    status = home.wait_state("RUNNING", timeout=20)
    assert {s: status["services"][s]["epoch"] for s in WORKERS} == epochs
    assert [e for e in status["boot_log"] if e["event"] in ("go", "restart", "react")] == []
    assert all(status["services"][s]["restarts"] == 0 for s in WORKERS)


BAD_REQUESTS = [
    ([b"\xc1\xc1"], wire.BAD_MSGPACK),
    ([b"one", b"two"], wire.BAD_FRAMES),
    ([msgpack.packb(["not", "a", "map"])], wire.BAD_ENVELOPE),
    ([msgpack.packb({"v": 9, "op": "status", "id": "x"})], wire.BAD_VERSION),
    ([msgpack.packb({"v": 1, "op": "status"})], wire.BAD_ENVELOPE),
    ([msgpack.packb({"v": 1, "op": "launch_rockets", "id": "x"})], wire.UNKNOWN_OP),
    ([msgpack.packb({"v": 1, "op": "step", "id": "x", "args": {"step": 1}})], wire.BAD_BODY),
]


def bad_pub_frames(topic: bytes) -> list[list[bytes]]:
    good = {
        "v": 1,
        "type": "hb",
        "src": "x",
        "epoch": 1,
        "seq": 1,
        "ts": 1,
        "body": {"service": "x", "pid": 1, "epoch": 1, "state": "RUNNING", "uptime_s": 0.0, "rss_bytes": 0},
    }
    return [
        [topic],  # one frame
        [topic, b"\xc1\xc1"],  # not msgpack
        [topic, msgpack.packb({**good, "v": 3})],  # unknown version
        [topic, msgpack.packb({**good, "type": "nonsense"})],  # unknown type
        [topic, msgpack.packb({k: v for k, v in good.items() if k != "seq"})],  # missing field
        [topic, msgpack.packb({**good, "body": {"service": "x"}})],  # body missing fields
    ]


EXPECTED_KINDS = {
    wire.BAD_FRAMES,
    wire.BAD_MSGPACK,
    wire.BAD_VERSION,
    wire.UNKNOWN_TYPE,
    wire.BAD_ENVELOPE,
    wire.BAD_BODY,
}


def flood_until_counted(home: Home, publishers: dict[str, str], topics: dict[str, bytes], victims: list[str]) -> None:
    """Bind fake publishers at real endpoints and send every kind of bad frame until each victim counted them."""
    ctx = zmq.Context.instance()
    socks = []
    for service, endpoint in publishers.items():
        s = ctx.socket(zmq.PUB)
        s.setsockopt(zmq.LINGER, 0)
        s.bind(endpoint)
        socks.append((s, topics[service]))

    def all_counted():
        for v in victims:
            kinds = set(home.status_of(v)["wire_errors"])
            if not kinds >= EXPECTED_KINDS:
                return None
        return True

    def send_and_check():
        for s, topic in socks:
            for frames in bad_pub_frames(topic):
                s.send_multipart(frames)
        return all_counted()

    try:
        wait_for(send_and_check, 15, f"{victims} to count every kind of malformed frame", interval=0.3)
    finally:
        for s, _ in socks:
            s.close()


def test_malformed_frames_to_every_sub_socket(home):
    cfg = home.config()
    # connector and preditor are replaced by fake publishers: orchestrator (hb.), preditor-less paper
    # (bar., signal.) and executor (signal.) receive garbage on their SUB sockets.
    for s in ("orchestrator", "persistence", "executor", "paper"):
        home.start(s)
    wait_for(lambda: home.status_of("paper"), 10, "paper up")
    flood_until_counted(
        home,
        {"connector": cfg.endpoint("connector", "pub"), "preditor": cfg.endpoint("preditor", "pub")},
        {"connector": b"bar.EURUSD.H1", "preditor": b"signal.EURUSD"},
        ["paper", "executor"],
    )
    flood_until_counted(
        home,
        {"connector": cfg.endpoint("connector", "pub"), "preditor": cfg.endpoint("preditor", "pub")},
        {"connector": b"hb.connector", "preditor": b"hb.preditor"},
        ["orchestrator"],
    )
    # every service subscribes to sys.state: replace the orchestrator's publisher as well
    home.kill("orchestrator")
    flood_until_counted(
        home,
        {"orchestrator": cfg.endpoint("orchestrator", "pub")},
        {"orchestrator": b"sys.state"},
        ["persistence", "executor", "paper"],
    )
    for s in ("persistence", "executor", "paper"):
        assert home.procs[s].poll() is None, f"{s} died"


def test_dry_run_flag_reaches_the_executor_from_the_environment(home):
    env = {**home.env, "ORACLE_DRY_RUN": "true", "ORACLE_LOG_LEVEL": "DEBUG"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.executor"],
        env=env,
        cwd=home.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        status = wait_for(lambda: home.status_of("executor"), 10, "executor status")
        assert status["dry_run"] is True
    finally:
        proc.kill()
        proc.wait(10)


def test_a_failed_step_reaches_the_orchestrator_and_the_service_exits(home):
    (home.root / "config" / "executor_symbols.json").write_text("{ not json")
    for s in ["orchestrator", *WORKERS]:
        home.start(s)
    # an invalid file of its configuration: a permanent failure (no restart can fix it), exit 78 (common/failure.py)
    assert home.procs["executor"].wait(30) == failure.EXIT_PERMANENT
    status = home.status()
    failed = [e for e in status["boot_log"] if e["event"] == "step_failed"]
    assert failed and failed[0]["service"] == "executor" and failed[0]["step"] == "executor.load"
    assert "executor_symbols.json" in failed[0]["error"]
    status = home.wait_state("FAILED")  # no supervisord here: the orchestrator reads the record of the process it heard
    assert "executor_symbols.json" in status["services"]["executor"]["failure"]
    assert status["failed_reason"].startswith("executor: symbol config ")
    assert "executor_symbols.json" in home.log("executor")


# ---- one boot, orchestrator first (the seed's order), shared by the last two tests -------------------------------
@pytest.fixture(scope="module")
def orchestrator_first(tmp_path_factory):
    h = Home(tmp_path_factory.mktemp("orchestrator-first"))
    try:
        yield h, boot(h, ["orchestrator", *WORKERS], gap_s=0.3)
    finally:
        h.close()


def test_boot_order_holds_when_the_orchestrator_starts_first(orchestrator_first):
    assert_booted(*orchestrator_first)


def test_malformed_requests_to_every_rep_socket(orchestrator_first):
    home, _ = orchestrator_first
    ctx = zmq.Context.instance()
    cfg = home.config()
    for service in config.SERVICES:
        for frames, code in BAD_REQUESTS:
            sock = ctx.socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(cfg.endpoint(service, "rep"))
            sock.send_multipart(frames)
            assert sock.poll(3000), f"{service} did not answer {frames!r}"
            reply = msgpack.unpackb(sock.recv())
            assert reply["ok"] is False and reply["error"]["code"] == code, (service, frames, reply)
            assert reply["error"]["message"]
            sock.close()
        counts = home.status_of(service)["wire_errors"]
        assert sum(counts.values()) == len(BAD_REQUESTS), (service, counts)
        assert set(counts) == {code for _, code in BAD_REQUESTS}
    status = home.wait_state("RUNNING")
    assert all(home.procs[s].poll() is None for s in config.SERVICES)
    assert status["services"]["executor"]["restarts"] == 0
