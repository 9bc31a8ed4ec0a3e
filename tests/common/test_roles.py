"""The table of who may call each op (common/roles.py) and the reading of a caller's identity (common/peer.py)."""

import pytest

from common import messages, peer, roles
from common.peer import Peer


def test_every_op_of_the_wire_says_who_may_call_it():
    assert set(roles.CALLERS) == set(messages.OPS)
    for op, who in roles.CALLERS.items():
        assert who in (roles.ANY, roles.SELF) or (isinstance(who, frozenset) and who <= roles.ROLES), op


@pytest.mark.parametrize(("op", "allowed", "refused"), [
    ("step", {"orchestrator", "operator"}, {"paper", "executor", "connector", "preditor", "persistence"}),
    ("stop", {"orchestrator", "operator"}, {"paper", "executor"}),
    ("clear_halt", {"orchestrator", "operator"}, {"paper", "connector"}),
    ("order_open", {"executor", "operator"}, {"paper", "preditor", "orchestrator"}),
    ("order_close", {"executor", "operator"}, {"paper", "persistence"}),
    ("order_amend", {"executor", "operator"}, {"paper"}),
    ("command", {"operator"}, {"paper", "executor", "orchestrator"}),
    ("hello", {"paper", "executor", "connector", "preditor", "persistence"}, {"operator", "orchestrator"}),
    ("status", roles.CORE | {"web"}, {"notifier"}),
    ("query", roles.CORE | {"notifier", "web"}, set()),
    ("positions", roles.CORE | {"web"}, {"notifier"}),
    ("write", roles.CORE, roles.AUXILIARY),
    ("history", roles.CORE, roles.AUXILIARY),
    ("last_signals", roles.CORE, roles.AUXILIARY),
    ("order_open", {"executor"}, roles.AUXILIARY),
    ("order_close", {"executor", "operator"}, roles.AUXILIARY),
    ("command", {"operator"}, roles.AUXILIARY),
    ("stop", {"operator"}, roles.AUXILIARY),
])
def test_who_may_call(op, allowed, refused):
    permitted = roles.permitted(op)
    assert allowed <= permitted and not refused & permitted and None not in permitted


def test_an_unknown_caller_may_call_nothing():
    assert all(None not in roles.permitted(op) for op in messages.OPS)
    assert roles.permitted("no_such_op") == frozenset()


@pytest.mark.parametrize(("name", "kind", "role"), [
    ("executor", "executor", "executor"), ("preditor-1", "preditor", "preditor"), ("preditor-x", "preditor-x", None),
    ("operator", "operator", "operator"), ("sim-broker", "sim-broker", None), ("-3", "-3", None),
])
def test_a_name_gives_its_kind_and_role(name, kind, role):
    assert (roles.kind_of(name), roles.role_of(name)) == (kind, role)


@pytest.mark.parametrize(("name", "role", "service", "ok"), [
    ("paper", "paper", "paper", True),
    ("paper", "paper", "executor", False),
    ("preditor-1", "preditor", "preditor-1", True),
    ("preditor-1", "preditor", "preditor-2", False),
    ("preditor", "preditor", "preditor-2", True),  # a shard run by hand: known by its kind only
    ("operator", "operator", "paper", False),
    ("orchestrator", "orchestrator", "orchestrator", False),  # it says hello to no one
    ("x", None, "x", False),
])
def test_a_hello_or_ready_speaks_for_its_own_service_only(name, role, service, ok):
    assert roles.is_self(name, role, service) is ok


def test_a_refusal_names_who_may_call():
    assert roles.describe("step") == "operator, orchestrator"
    assert roles.describe("hello") == "the service itself"
    assert roles.describe("ping") == "any service or the operator"
    assert roles.describe("query") == "any service or the operator, notifier, web"


def test_the_web_may_call_exactly_its_reads():
    assert {op for op in messages.OPS if "web" in roles.permitted(op)} == {"status", "query", "positions"}
    assert roles.role_of("web") == "web"


def test_the_web_process_is_known_by_its_program_or_module():
    assert peer.process_name(env(SUPERVISOR_PROCESS_NAME="web"), b"") == "web"
    assert peer.process_name(b"", b"/v/bin/python\0-m\0services.web\0") == "web"
    assert peer.identify(5, 77, 5, "web") == Peer("web", "web", 77, 5)


# ---- common/peer.py: the caller's identity ------------------------------------------------------

@pytest.mark.parametrize(("address", "creds"), [
    ("localhost:0:0:5202", (0, 0, 5202)),
    ("localhost:1000:1000:42", (1000, 1000, 42)),
    ("127.0.0.1", None),
    ("", None),
    ("a:b:c:d", None),
    ("localhost:1:2", None),
])
def test_ipc_credentials_from_the_peer_address(address, creds):
    assert peer.parse_ipc_address(address) == creds


def env(**kv: str) -> bytes:
    return b"\0".join(f"{k}={v}".encode() for k, v in kv.items()) + b"\0"


def cmd(*args: str) -> bytes:
    return b"\0".join(a.encode() for a in args) + b"\0"


@pytest.mark.parametrize(("environ", "cmdline", "name"), [
    (env(HOME="/x", SUPERVISOR_PROCESS_NAME="paper"), cmd("python", "-m", "services.paper"), "paper"),
    (env(SUPERVISOR_PROCESS_NAME="preditor-1"), cmd("python", "-m", "services.preditor"), "preditor-1"),
    (env(HOME="/x"), cmd("/v/bin/python", "-m", "services.executor", "--dry-run"), "executor"),
    (env(), cmd("python", "-m", "services.connector.sim", "--from-config"), None),
    (env(), cmd("python", "-m", "pytest", "tests"), None),
    (env(), cmd("/v/bin/oracle", "ctl", "stop"), None),
    (b"", b"", None),  # gone, or /proc hidden
    (env(), cmd("python", "-m"), None),
    (env(SUPERVISOR_PROCESS_NAME="notifier"), cmd("python", "-m", "services.notifier"), "notifier"),
    (env(), cmd("/v/bin/python", "-m", "services.notifier"), "notifier"),
])
def test_what_a_process_is_from_its_environment_and_command_line(environ, cmdline, name):
    assert peer.process_name(environ, cmdline) == name


@pytest.mark.parametrize(("uid", "name", "key", "expected"), [
    (1000, "paper", "", Peer("paper", "paper", 7, 1000)),
    (1000, "preditor-1", "", Peer("preditor", "preditor-1", 7, 1000)),
    (1000, None, "", Peer("operator", "operator", 7, 1000)),  # a process of ours that is no service
    (1000, "sim-broker", "", Peer("operator", "operator", 7, 1000)),
    (1000, "operator", "", Peer("operator", "operator", 7, 1000)),
    (1001, "executor", "", Peer(None, "uid 1001", 7, 1001)),  # another user: no one, whatever it says
    (1001, None, "executor", Peer("executor", "executor", 7, 1001, "executor")),  # the key decides
    (1000, "paper", "intruder", Peer(None, "intruder", 7, 1000, "intruder")),
    (1000, "notifier", "", Peer("notifier", "notifier", 7, 1000)),  # an auxiliary program: its own role
])
def test_a_caller_on_ipc(uid, name, key, expected):
    assert peer.identify(uid, 7, 1000, name, key) == expected


def test_a_caller_over_tcp_with_keys_is_its_key():
    assert peer.from_key("preditor-2") == Peer("preditor", "preditor-2", key="preditor-2")
    assert peer.from_key("mallory").role is None
    assert str(peer.from_key("executor")) == "executor" and str(Peer("paper", "paper", 9)) == "paper (pid 9)"
