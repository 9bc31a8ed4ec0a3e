"""The Responder refuses a call its caller's role may not make (common/roles.py), before the handler runs: real ipc
sockets, callers that are real processes (a child that supervisord would have named ``paper``, the operator's
process, another user's)."""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import pytest
import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from common import bus, messages, roles

# a caller: one raw REQ request (its args a msgpack map given in hex), prints "ok" or the error's code and message
CALLER = """
import os, sys, msgpack, zmq
if os.environ.get("CURVE"):  # server public, own public, own secret (z85)
    server_key, public, secret = (k.encode() for k in os.environ["CURVE"].split(","))
if os.environ.get("CALLER_UID"):  # another user (imported as root: the venv may not be readable by that user)
    os.setuid(int(os.environ["CALLER_UID"]))
endpoint, op, args = sys.argv[1], sys.argv[2], msgpack.unpackb(bytes.fromhex(sys.argv[3]))
sock = zmq.Context().socket(zmq.REQ)
sock.setsockopt(zmq.LINGER, 0)
if os.environ.get("CURVE"):
    sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = server_key, public, secret
sock.connect(endpoint)
sock.send(msgpack.packb({"v": 1, "op": op, "id": "c-1", "args": args}))
if not sock.poll(int(os.environ.get("CALLER_WAIT_MS", "10000"))):
    print("no answer"); sys.exit(1)
reply = msgpack.unpackb(sock.recv())
print("ok" if reply["ok"] else reply["error"]["code"] + " " + reply["error"]["message"])
"""


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


class Server:
    """A Responder whose handlers record what reached them; refusals told to `told`."""

    def __init__(self, ctx: zmq.Context, endpoint: str, concurrent: bool = False, curve_secret: bytes = b""):
        self.reached: list[tuple[str, object]] = []
        self.told: list[tuple[str, str, int | None, int]] = []
        handlers = {op: self._handler(op) for op in ("ping", "step", "order_open", "hello", "command", "query",
                                                     "write")}
        self.rep = bus.Responder(ctx, endpoint, handlers, bus.WireErrors("t"), concurrent=concurrent,
                                 on_refused=lambda op, caller, n, _why: self.told.append((op, caller.name,
                                                                                          caller.pid, n)))
        self.endpoint = endpoint
        if curve_secret:  # the CURVE work sets its sockets up in common/bus.py, before bind; here by hand, rebound
            bound = self.rep.sock.get(zmq.LAST_ENDPOINT).decode()
            self.rep.sock.unbind(bound)
            self.rep.sock.curve_secretkey = curve_secret
            self.rep.sock.curve_server = True
            self.rep.sock.bind("tcp://127.0.0.1:*" if bound.startswith("tcp") else f"{bound}-curve")
            self.endpoint = self.rep.sock.get(zmq.LAST_ENDPOINT).decode()

    def _handler(self, op: str):
        def handle(args):
            self.reached.append((op, self.rep.caller))
            if op == "hello" and args.version == "spoof":
                raise bus.Forbidden("the handler's own check")
            return {}
        return handle

    def call(self, op: str, args: dict, env: dict | None = None) -> tuple[str, int]:
        """(the caller's printed answer, its pid), serving requests until it exits."""
        child_env = {**{k: v for k, v in os.environ.items() if k != "SUPERVISOR_PROCESS_NAME"}, **(env or {})}
        proc = subprocess.Popen([sys.executable, "-c", CALLER, self.endpoint, op, msgpack.packb(args).hex()],
                                env=child_env, stdout=subprocess.PIPE, text=True, cwd="/")
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            if self.rep.sock.poll(50):
                self.rep.serve_ready()
        out, _ = proc.communicate(timeout=10)
        return out.strip(), proc.pid


STEP = {"step": "executor.stop"}
ORDER = {"symbol": "EURUSD", "direction": 1, "lots": 0.01, "client_order_id": "x-1"}


def hello(service: str, version: str = "1") -> dict:
    return {"service": service, "pid": 1, "epoch": 1, "version": version}


@pytest.mark.parametrize("concurrent", [False, True], ids=["REP", "ROUTER"])
def test_a_call_the_callers_role_may_not_make_never_reaches_its_handler(ctx, tmp_path, concurrent):
    server = Server(ctx, f"ipc://{tmp_path}/rep", concurrent)
    paper = {"SUPERVISOR_PROCESS_NAME": "paper"}
    answer, pid = server.call("step", STEP, paper)
    assert answer.startswith(f"{roles.FORBIDDEN} 'step' may be called by operator, orchestrator, not by paper")
    answer2, pid2 = server.call("order_open", ORDER, paper)
    assert answer2.startswith(roles.FORBIDDEN) and "executor, operator" in answer2
    server.call("step", STEP, paper)
    assert server.reached == []
    assert server.rep.refused == {"step paper": 2, "order_open paper": 1}
    # told once per (op, caller) (then at most every ALERT_EVERY_S), with the caller's pid from the kernel
    assert server.told == [("step", "paper", pid, 1), ("order_open", "paper", pid2, 1)]
    assert server.call("ping", {}, paper)[0] == "ok"  # reads are for anyone we know
    assert [(op, c.role, c.name) for op, c in server.reached] == [("ping", "paper", "paper")]


def test_the_roles_that_may_are_served(ctx, tmp_path):
    server = Server(ctx, f"ipc://{tmp_path}/rep")
    assert server.call("step", STEP)[0] == "ok"  # this test's own kind of process: the operator
    assert server.call("order_open", ORDER, {"SUPERVISOR_PROCESS_NAME": "executor"})[0] == "ok"
    answer, pid = server.call("hello", hello("paper"), {"SUPERVISOR_PROCESS_NAME": "paper"})
    assert answer == "ok"
    assert [(op, c.role, c.pid) for op, c in server.reached][-1] == ("hello", "paper", pid)
    assert [op for op, _ in server.reached] == ["step", "order_open", "hello"]
    assert server.rep.refused == {}


def test_the_notifier_may_query_the_store_and_nothing_else(ctx, tmp_path):
    server = Server(ctx, f"ipc://{tmp_path}/rep")
    notifier = {"SUPERVISOR_PROCESS_NAME": "notifier"}
    assert server.call("query", {"table": "events", "where": {}, "limit": 1}, notifier)[0] == "ok"
    write = {"tables": {"events": []}}
    for op, args in (("write", write), ("ping", {}), ("order_open", ORDER), ("step", STEP)):
        answer, _ = server.call(op, args, notifier)
        assert answer.startswith(f"{roles.FORBIDDEN} '{op}' may be called by ") and "not by notifier (pid" in answer
    assert [(op, c.role) for op, c in server.reached] == [("query", "notifier")]


def test_a_hello_for_another_service_is_refused(ctx, tmp_path):
    server = Server(ctx, f"ipc://{tmp_path}/rep")
    answer, _ = server.call("hello", hello("executor"), {"SUPERVISOR_PROCESS_NAME": "paper"})
    assert answer.startswith(f"{roles.FORBIDDEN} 'hello' for 'executor' may be sent by that service only")
    assert server.call("hello", hello("paper"))[0].startswith(roles.FORBIDDEN)  # the operator is no service
    assert server.reached == []
    assert server.rep.refused == {"hello paper": 1, "hello operator": 1}


def test_a_handlers_own_refusal_is_counted_and_told_like_the_tables(ctx, tmp_path):
    server = Server(ctx, f"ipc://{tmp_path}/rep")
    answer, pid = server.call("hello", hello("paper", "spoof"), {"SUPERVISOR_PROCESS_NAME": "paper"})
    assert answer == f"{roles.FORBIDDEN} the handler's own check"
    assert server.rep.refused == {"hello paper": 1} and server.told == [("hello", "paper", pid, 1)]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a caller as another user")
def test_another_user_is_refused_everything(ctx):
    shared = Path(tempfile.mkdtemp(prefix="roles-"))
    try:
        shared.chmod(0o755)
        server = Server(ctx, f"ipc://{shared}/rep")
        (shared / "rep").chmod(0o777)  # reachable: the run directory's 0700 is the first wall; this is the second
        answer, pid = server.call("ping", {}, {"CALLER_UID": "65534"})
        assert answer.startswith(f"{roles.FORBIDDEN} 'ping' may be called by any service or the operator, not by "
                                 "uid 65534")
        assert server.reached == [] and server.rep.refused == {"ping uid 65534": 1}
        assert server.told == [("ping", "uid 65534", pid, 1)]
    finally:
        for p in shared.iterdir():
            p.unlink()
        shared.rmdir()


def test_tcp_on_loopback_without_keys_is_the_operator_as_before(ctx):
    server = Server(ctx, "tcp://127.0.0.1:*")
    server.endpoint = server.rep.sock.get(zmq.LAST_ENDPOINT).decode()
    assert server.call("step", STEP, {"SUPERVISOR_PROCESS_NAME": "paper"})[0] == "ok"
    assert [(op, c.role) for op, c in server.reached] == [("step", "operator")]


def test_the_caller_check_is_answered_in_the_reply_a_requester_raises(ctx, tmp_path):
    """In one process (the operator), the same error a Requester raises: RequestFailed with code forbidden."""
    endpoint = f"ipc://{tmp_path}/rep"
    rep = bus.Responder(ctx, endpoint, {"hello": lambda a: {}}, bus.WireErrors("t"))
    req = bus.Requester(ctx, endpoint, "t", 2000)
    req.send("hello", messages.Hello("paper", 1, 1, "1"))
    assert rep.sock.poll(2000) and rep.serve_ready() == 1
    assert req.sock.poll(2000)
    reply = req.take_reply()
    assert reply is not None and not reply.ok and reply.error_code == roles.FORBIDDEN
    req.close()


# ---- with CURVE keys (the contract of the CURVE work: the ZAP handler's User-Id is the key's name) ----------------

class NamedKeys(ThreadAuthenticator):
    """pyzmq's ZAP authenticator, allowing the given public keys, each answered with its name as the User-Id."""

    def __init__(self, ctx: zmq.Context, names: dict[bytes, str]):
        super().__init__(ctx)
        self.names = names

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.names[z85.encode(client_public_key)]  # given raw; the names are by the z85 text


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_with_curve_the_callers_key_is_its_identity(ctx, tmp_path, transport):
    server_public, server_secret = zmq.curve_keypair()
    keys = {name: zmq.curve_keypair() for name in ("paper", "operator", "stranger")}
    auth = NamedKeys(ctx, {keys[n][0]: n for n in ("paper", "operator")})  # the stranger's key is not allowed
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=Allowed({keys[n][0] for n in ("paper", "operator")}))
    try:
        endpoint = "tcp://127.0.0.1:*" if transport == "tcp" else f"ipc://{tmp_path}/rep"
        server = Server(ctx, endpoint, curve_secret=server_secret)

        def call(name: str, op: str, args: dict) -> str:
            public, secret = keys[name]
            env = {"CURVE": ",".join(k.decode() for k in (server_public, public, secret)),
                   "SUPERVISOR_PROCESS_NAME": "executor"}  # what the process looks like does not count: its key does
            return server.call(op, args, {**env, "CALLER_WAIT_MS": "1500"})[0]

        assert call("paper", "step", STEP).startswith(f"{roles.FORBIDDEN} 'step' may be called by operator, "
                                                      "orchestrator, not by paper")
        assert call("operator", "step", STEP) == "ok"
        assert call("stranger", "ping", {}) == "no answer"  # refused at the handshake: never a request
        assert [(op, c.role, c.key) for op, c in server.reached] == [("step", "operator", "operator")]
        caller = server.reached[0][1]
        assert (caller.pid is not None) is (transport == "ipc")  # the pid is the kernel's, on ipc only
        assert server.rep.refused == {"step paper": 1}
    finally:
        auth.stop()


class Allowed:
    def __init__(self, keys: set[bytes]):
        self.keys = keys

    def callback(self, _domain: str, key: bytes) -> bool:
        return key in self.keys
