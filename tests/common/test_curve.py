"""CURVE on the wire (common/keys.py, bus.secure): key files and modes, real sockets admitting only known keys and
naming the peer by its key's name, no plaintext fallback, and the configuration's checks."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth
from harness import REPO, Home, free_port

from common import bus, config, failure, keys, messages, wire


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    bus.plain()  # stops the authenticators before the context goes
    c.destroy(linger=0)


@pytest.fixture
def keys_dir(tmp_path):
    d = tmp_path / "keys"
    keys.init(d, keys.names(config.SERVICES))
    return d


# ---- key files --------------------------------------------------------------------------------


def test_init_makes_private_keys_and_never_overwrites(tmp_path):
    d = tmp_path / "var" / "keys"
    made = keys.init(d, keys.names(config.SERVICES))
    assert made == [*config.SERVICES, *config.AUXILIARY, "operator"]
    assert mode(d) == 0o700
    for name in made:
        assert mode(keys.secret_path(d, name)) == 0o600
        assert keys.public_path(d, name).exists()
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    assert keys.init(d, [*keys.names(config.SERVICES), "preditor-1"]) == ["preditor-1"]  # only what was missing
    assert all((d / name).read_bytes() == data for name, data in before.items())


def test_a_copied_public_key_gets_no_secret_beside_it(tmp_path):
    other = tmp_path / "other"
    keys.init(other, ["preditor"])
    d = tmp_path / "keys"
    d.mkdir()
    (d / "preditor.key").write_bytes((other / "preditor.key").read_bytes())
    assert keys.init(d, ["preditor", "executor"]) == ["executor"]
    assert not keys.secret_path(d, "preditor").exists()
    ring = keys.load(d, "executor")
    assert ring.publics["preditor"] == zmq.auth.load_certificate(other / "preditor.key")[0]
    assert ring.name_of(ring.publics["preditor"]) == "preditor"


def test_keyring_maps_names_and_keys_both_ways(keys_dir):
    ring = keys.load(keys_dir, "executor")
    assert set(ring.publics) == {*config.SERVICES, *config.AUXILIARY, "operator"}
    assert ring.public == ring.publics["executor"] and len(ring.secret) == 40
    assert all(ring.name_of(k) == n for n, k in ring.publics.items())
    with pytest.raises(keys.KeysError, match="no CURVE public key for preditor-7: .*preditor-7.key is missing"):
        ring.public_of("preditor-7")


@pytest.mark.parametrize("damage, message", [
    (lambda d: keys.secret_path(d, "executor").unlink(),
     "CURVE secret key of executor is missing: .*executor.key_secret"),
    (lambda d: keys.secret_path(d, "executor").chmod(0o644), "executor.key_secret is readable by others"),
    (lambda d: d.chmod(0o777), "keys directory .*keys is writable by others \\(mode 777\\): chmod 700 it"),
    (lambda d: keys.public_path(d, "paper").write_text("nothing here\n"), "cannot read CURVE key file .*paper.key"),
    (lambda d: keys.secret_path(d, "executor").write_text('curve\n    public-key = "short"\n'),
     "executor.key_secret: the public key is not 40 Z85 characters"),
])
def test_bad_key_files_are_errors_naming_the_file(keys_dir, damage, message):
    damage(keys_dir)
    with pytest.raises(keys.KeysError, match=message):
        keys.load(keys_dir, "executor")


def test_missing_keys_dir_says_how_to_make_it(tmp_path):
    with pytest.raises(keys.KeysError, match="keys directory .* does not exist .*oracle keys init"):
        keys.load(tmp_path / "nope", "executor")


# ---- configuration ----------------------------------------------------------------------------


def load(tmp_path: Path, overlay: str) -> config.Config:
    (tmp_path / "overlay.yaml").write_text(overlay)
    return config.load(REPO / "config" / "default.yaml", tmp_path / "overlay.yaml", env={"ORACLE_HOME": str(tmp_path)})


def test_off_loopback_tcp_needs_curve(tmp_path):
    off = "endpoints:\n  executor: {rep: 'tcp://198.18.0.1:7102'}\n"
    with pytest.raises(config.ConfigError, match=r"endpoints.executor.rep: .*not on loopback.*wire.curve: true"):
        load(tmp_path, off)
    cfg = load(tmp_path, off + "wire: {curve: true}\n")
    assert cfg.endpoint("executor", "rep") == "tcp://198.18.0.1:7102"
    assert cfg.path(cfg.wire.keys_dir) == tmp_path / "var" / "keys"


def test_curve_without_keys_is_a_config_error_naming_the_file(tmp_path):
    cfg = load(tmp_path, "wire: {curve: true, keys_dir: k}\n")
    with pytest.raises(config.ConfigError, match="keys directory .*/k does not exist"):
        keys.secure_process(cfg, "executor")
    keys.init(tmp_path / "k", ["operator"])
    with pytest.raises(config.ConfigError, match="secret key of executor is missing: .*/k/executor.key_secret"):
        keys.secure_process(cfg, "executor")
    assert not bus.is_secure()
    assert keys.secure_process(load(tmp_path, "wire: {curve: false}\n"), "executor") is None
    keys.init(tmp_path / "k", keys.names(config.SERVICES))
    try:
        ring = keys.secure_process(cfg, "executor")
        assert bus.is_secure() and ring is not None and ring.own == "executor"
        assert bus._curve is not None
        assert bus._curve.server_key(cfg.endpoint("connector", "rep")) == ring.publics["connector"]
        assert bus._curve.server_key(cfg.endpoint("preditor", "pub")) == ring.publics["preditor"]
    finally:
        bus.plain()


def test_a_service_with_curve_and_no_keys_exits_naming_the_file(tmp_path):
    home = Home(tmp_path, {"wire": {"curve": True}})
    try:
        out = subprocess.run([sys.executable, "-m", "services.paper"], cwd=home.root, env=home.env,
                             capture_output=True, text=True, timeout=60)
    finally:
        home.close()
    assert out.returncode == failure.EXIT_PERMANENT  # a permanent failure: supervisord does not restart it
    assert "CURVE keys directory" in out.stderr and str(tmp_path / "var" / "keys") in out.stderr
    recorded = failure.read(tmp_path / "var" / "run" / "failed", "paper")  # where the orchestrator and ctl read it
    assert recorded is not None and "CURVE keys directory" in recorded.cause


# ---- real sockets -----------------------------------------------------------------------------


def raw_client(ctx: zmq.Context, endpoint: str, server_key: bytes, keypair: tuple[bytes, bytes]) -> zmq.Socket:
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.curve_publickey, sock.curve_secretkey = keypair
    sock.curve_serverkey = server_key
    sock.connect(endpoint)
    return sock


def key_pair(d: Path, name: str) -> tuple[bytes, bytes]:
    public, secret = zmq.auth.load_certificate(keys.secret_path(d, name))
    assert secret is not None
    return public, secret


def test_the_peer_is_named_by_its_key_and_an_unknown_key_is_denied(ctx, keys_dir, tmp_path, caplog):
    ring = keys.load(keys_dir, "connector")
    endpoint = f"ipc://{tmp_path}/connector.rep"
    bus.secure(ring, "connector", {endpoint: ring.public})
    server = bus._limited(ctx.socket(zmq.REP))  # the one place every socket of the project is made
    server.setsockopt(zmq.LINGER, 0)
    server.bind(endpoint)

    executor = raw_client(ctx, endpoint, ring.public, key_pair(keys_dir, "executor"))
    executor.send(b"hello")
    assert server.poll(5000)
    frame = server.recv(copy=False)
    assert frame.bytes == b"hello" and frame.get("User-Id") == "executor"
    server.send(b"ok")
    assert executor.recv() == b"ok"

    stranger_keys = zmq.curve_keypair()
    stranger = raw_client(ctx, endpoint, ring.public, stranger_keys)
    stranger.send(b"let me in")
    wait_until(lambda: bus.curve_denials() >= 1, 5, "the stranger's handshake denied")
    assert not server.poll(200)  # nothing of it got through
    again = raw_client(ctx, endpoint, ring.public, stranger_keys)  # the same key again: counted, not logged again
    wait_until(lambda: bus.curve_denials() >= 2, 5, "the second handshake denied")
    assert bus._curve is not None
    assert bus._curve.admission.denied_by_key == {stranger_keys[0].decode(): 2}
    denials = [r for r in caplog.records if "CURVE handshake denied" in r.getMessage()]
    assert len(denials) == 1 and stranger_keys[0].decode() in denials[0].getMessage()
    again.close()

    # the project's own client: the configured server key, its own keypair, and the same name check
    req = bus.Requester(ctx, endpoint, "t", timeout_ms=3000)
    req.send("ping", messages.NoArgs())
    assert server.poll(5000)
    frame = server.recv(copy=False)
    assert frame.get("User-Id") == "connector"
    server.send(wire.encode_reply(wire.decode_request([frame.bytes]).id, messages.Pong("connector", 1)))
    assert wait_until(req.take_reply, 5, "the reply").result == messages.Pong("connector", 1)
    for s in (executor, stranger, req, server):
        s.close()


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_responder_and_pubsub_work_with_curve(ctx, keys_dir, tmp_path, transport):
    ring = keys.load(keys_dir, "operator")
    if transport == "ipc":
        rep_ep, pub_ep = f"ipc://{tmp_path}/rep", f"ipc://{tmp_path}/pub"
    else:
        rep_ep, pub_ep = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    bus.secure(ring, "operator", {rep_ep: ring.public, pub_ep: ring.public})
    rep = bus.Responder(ctx, rep_ep, {"ping": lambda _a: messages.Pong("x", 7)}, bus.WireErrors("t"))
    req = bus.Requester(ctx, rep_ep, "t", timeout_ms=3000)
    req.send("ping", messages.NoArgs())
    wait_until(lambda: rep.serve_ready(), 5, "the request served")
    assert wait_until(req.take_reply, 5, "the reply").result == messages.Pong("x", 7)

    pub = bus.Publisher(ctx, pub_ep, "t", bus.new_epoch())
    sub = bus.Subscriber(ctx, [pub_ep], ["hb."], bus.WireErrors("t"))
    hb = messages.Heartbeat("x", 1, 1, "RUNNING", 0.0, 0)

    def heard():
        pub.publish("hb.x", hb)  # until the subscription is through (slow joiner)
        return sub.sock.poll(20) and sub.drain()

    got = wait_until(heard, 5, "a published message")
    assert got[0].envelope.body == hb
    for part in (rep, req, pub, sub):
        part.close()


def test_a_curve_client_never_falls_back_to_a_plaintext_server(ctx, keys_dir, tmp_path):
    endpoint = f"ipc://{tmp_path}/plain"
    server = ctx.socket(zmq.REP)  # plain: made outside bus before CURVE is on
    server.setsockopt(zmq.LINGER, 0)
    server.bind(endpoint)
    ring = keys.load(keys_dir, "operator")
    bus.secure(ring, "operator", {endpoint: ring.publics["executor"]})
    req = bus.Requester(ctx, endpoint, "t", timeout_ms=300)
    with pytest.raises(bus.RequestTimeout, match="CURVE on, as operator: a server without CURVE, or one that does "
                                                 "not admit this key, never answers"):
        req.call("ping", messages.NoArgs())
    assert not server.poll(0)  # the request never reached the server in clear
    with pytest.raises(bus.CurveError, match="no server public key is known for ipc://.*/elsewhere"):
        bus.Requester(ctx, f"ipc://{tmp_path}/elsewhere", "t")
    req.close()
    server.close()


def test_without_its_authenticator_a_server_admits_nobody_and_the_context_terminates(keys_dir, tmp_path):
    c = zmq.Context()
    ring = keys.load(keys_dir, "connector")
    endpoint = f"ipc://{tmp_path}/rep"
    bus.secure(ring, "connector", {endpoint: ring.public})
    try:
        server = bus._limited(c.socket(zmq.REP))
        server.setsockopt(zmq.LINGER, 0)
        server.bind(endpoint)
        bus.release(c)  # the ZAP handler gone: fail closed, not open
        client = raw_client(c, endpoint, ring.public, key_pair(keys_dir, "executor"))
        client.send(b"hello")
        assert not server.poll(500)
        client.close()
        server.close()
        c.term()  # would wait forever on the authenticator's socket without release
    finally:
        bus.plain()


# ---- the CLI ----------------------------------------------------------------------------------


def oracle(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "common.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})


def test_oracle_keys_init_and_list(tmp_path):
    d = tmp_path / "keys"
    first = oracle("keys", "init", "--dir", str(d), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"made {d}/executor.key_secret (secret, 0600)" in first.stdout
    assert f"keys directory: {d} (0700)" in first.stdout
    again = oracle("keys", "init", "--dir", str(d), "--only", "executor", "preditor-1", cwd=tmp_path)
    assert "made" in again.stdout and "preditor-1.key_secret" in again.stdout
    assert "kept the existing keys of executor" in again.stdout
    listing = oracle("keys", "list", "--dir", str(d), cwd=tmp_path)
    public = zmq.auth.load_certificate(d / "executor.key")[0].decode()
    assert f"executor         {public}  secret here" in listing.stdout
    bad = oracle("keys", "init", "--dir", str(d), "--only", "Bad Name", cwd=tmp_path)
    assert bad.returncode == 2 and "invalid key name 'Bad Name'" in bad.stderr


def test_check_config_reports_the_keys(tmp_path):
    home = Home(tmp_path, {"wire": {"curve": True}})
    try:
        res = home.oracle("check-config")
        assert res.returncode == 2 and "keys directory" in res.stderr and "does not exist" in res.stderr
        assert home.oracle("keys", "init", "--only", "executor", "operator").returncode == 0
        res = home.oracle("check-config")
        assert res.returncode == 2 and "no public key for orchestrator, persistence, preditor, paper" in res.stderr
        assert home.oracle("keys", "init").returncode == 0  # the rest, into wire.keys_dir of the configuration
        res = home.oracle("check-config")
        assert res.returncode == 0, res.stderr
        assert f"wire: CURVE, keys in {tmp_path}/var/keys: 9 public" in res.stdout
    finally:
        home.close()
