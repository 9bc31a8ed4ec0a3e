"""The operator's CLI and the services' start-up, as subprocesses: config errors are clear and name the key."""

import json
import socket
import subprocess
import sys

import pytest
from harness import VENV, Home

from common import failure


@pytest.fixture
def home(tmp_path):
    h = Home(tmp_path)
    yield h
    h.close()


@pytest.mark.parametrize(
    "overlay, message",
    [
        ("orchestrator:\n  restart_limit: many\n", "orchestrator.restart_limit: Input should be a valid integer"),
        (
            "paper:\n  initial_balance: ${ORACLE_TEST_UNSET_VAR}\n",
            "paper.initial_balance: environment variable ORACLE_TEST_UNSET_VAR is not set",
        ),
        ("persistance:\n  sqlite_path: x\n", "persistance: unknown key"),
    ],
)
def test_check_config_names_the_key(home, overlay, message):
    bad = home.root / "bad.yaml"
    bad.write_text(overlay)
    res = home.oracle("check-config", "--overlay", str(bad))
    assert res.returncode == 2
    assert message in res.stderr


def test_check_config_ok_lists_endpoints(home):
    res = home.oracle("check-config")
    assert res.returncode == 0, res.stderr
    assert f"ipc://{home.root}/var/run/executor.rep" in res.stdout


@pytest.mark.parametrize("service", ["orchestrator", "executor"])
def test_a_service_refuses_to_start_on_bad_config(home, service):
    (home.root / "config" / "local.yaml").write_text("executor:\n  dry_run: sometimes\n")
    res = subprocess.run(
        [sys.executable, "-m", f"services.{service}"], env=home.env, capture_output=True, text=True, timeout=30
    )
    assert res.returncode == failure.EXIT_PERMANENT  # not restarted by supervisord: a restart cannot fix it
    assert "executor.dry_run: Input should be a valid boolean" in res.stderr


def test_ctl_status_without_a_system_says_not_running_without_asking(home):
    res = home.oracle("ctl", "status", "--json", "--timeout-ms", "300")
    assert res.returncode == 3
    answer = json.loads(res.stdout)
    assert answer["system"] == "NOT RUNNING" and "supervisord is not running" in answer["reason"]
    assert "not answering" not in res.stderr  # said before any request: no timeout waited


def test_ctl_status_with_supervisord_up_and_the_orchestrator_silent_asks_each_service(home, tmp_path):
    # something accepts on supervisord's socket (its stand-in: a listening unix socket), no service answers
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as supervisord:
        supervisord.bind(str(home.config().path(home.config().orchestrator.supervisor_socket)))
        supervisord.listen()
        res = home.oracle("ctl", "status", "--json", "--timeout-ms", "300")
    assert res.returncode == 1
    assert "orchestrator not answering; asking each service directly" in res.stderr
    answer = json.loads(res.stdout)
    assert answer["system"] == "UNKNOWN (orchestrator down)"
    assert {s: v["state"] for s, v in answer["services"].items()} == dict.fromkeys(home.config().workers(),
                                                                                  "NOT ANSWERING")


def test_ctl_refuses_bad_arguments_before_sending_naming_the_argument(home):
    res = home.oracle("ctl", "set-risk-config", "dd_emergency_pct", "--timeout-ms", "300")
    assert res.returncode == 2
    assert "set_risk_config.changes: 'dd_emergency_pct' is not KEY=VALUE" in res.stderr


def test_ctl_command_without_its_service_says_so(home):
    res = home.oracle("ctl", "reset-halt", "--json", "--timeout-ms", "300")
    assert res.returncode == 1
    result = json.loads(res.stdout)
    assert (result["command"], result["service"], result["ok"]) == ("reset_halt", "executor", False)
    assert result["error"].startswith("no answer")


def test_help_lists_the_commands(home):
    res = subprocess.run([str(VENV / "bin" / "oracle"), "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "tap" in res.stdout and "ctl" in res.stdout


@pytest.mark.parametrize(
    "module",
    [
        "common.cli",
        "services.orchestrator.service",
        "services.connector.service",
        "services.executor.service",
        "services.paper.service",
        "services.persistence.service",
    ],
)
def test_small_processes_never_import_torch(module):
    code = (
        f"import sys, {module}\n"
        "heavy = [m for m in ('torch', 'hmmlearn', 'stable_baselines3', 'sklearn') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("tool", ["train", "backtest", "sim-broker", "report", "report drift"])
def test_every_tool_is_reachable_from_oracle(tool):
    res = subprocess.run(
        [str(VENV / "bin" / "oracle"), *tool.split(), "--help"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert "usage:" in res.stdout


def test_check_config_shows_every_error_under_one_header_and_every_port(home, monkeypatch):
    for name in ("CTRADER_CLIENT_ID", "CTRADER_CLIENT_SECRET", "CTRADER_ACCESS_TOKEN", "CTRADER_ACCOUNT_ID",
                 "SUPABASE_URL", "SUPABASE_KEY"):
        monkeypatch.delenv(name, raising=False)
    bad = home.root / "bad.yaml"
    bad.write_text("broker: {type: ctrader, environment: live}\npersistence:\n  sinks:\n"
                   "    supabase: {enabled: true}\n    postgres: {enabled: true, dsn: ''}\n")
    res = home.oracle("check-config", "--overlay", str(bad))
    assert res.returncode == 2
    errors = res.stderr.splitlines()
    assert errors[0] == f"invalid configuration ({home.root}/config/default.yaml + {bad}):"
    assert len(errors) == 4  # the header, then each problem on its own line
    assert "CTRADER_CLIENT_ID, CTRADER_CLIENT_SECRET, CTRADER_ACCESS_TOKEN, CTRADER_ACCOUNT_ID not set" in errors[1]
    assert "SUPABASE_URL, SUPABASE_KEY not set" in errors[2] and "persistence.sinks.postgres.dsn" in errors[3]
    assert "broker        ctrader live: live.ctraderapi.com:5035 (TLS verified)" in res.stdout
    assert f"ipc://{home.root}/var/run/connector.pub" in res.stdout  # the endpoints still shown


def test_check_config_shows_the_simulator_ports(home):
    sim = home.config().broker.sim
    res = home.oracle("check-config")
    assert res.returncode == 0, res.stderr
    assert f"simulator     127.0.0.1:{sim.port}, control 127.0.0.1:{sim.control_port}" in res.stdout


def test_every_oracle_command_honours_oracle_config(home):
    other = home.root / "other.yaml"
    other.write_text((home.root / "config" / "default.yaml").read_text().replace("run_dir: var/run",
                                                                                   "run_dir: var/elsewhere"))
    res = subprocess.run([str(VENV / "bin" / "oracle"), "check-config"], env={**home.env, "ORACLE_CONFIG": str(other)},
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert f"configuration OK ({other} + {home.root}/config/local.yaml" in res.stdout
    assert f"ipc://{home.root}/var/elsewhere/executor.rep" in res.stdout
