"""The command registry: every executor and orchestrator command handled and nothing else, arguments validated from
the one definition (errors name the argument), the wire message and `oracle ctl`'s parser built from it."""

from __future__ import annotations

import dataclasses
import os
import subprocess

import pytest
from harness import VENV, Home

from common import bus, cli, messages
from common import commands as registry
from common.commands import COMMANDS, CommandError
from services.executor import commands as executor_commands
from services.orchestrator.service import Orchestrator


def names_of(service: str) -> set[str]:
    return {c.name for c in COMMANDS.values() if c.service == service}


@pytest.fixture
def orchestrator(tmp_path):
    home = Home(tmp_path)
    orch = Orchestrator(home.config())
    yield orch
    orch.ctx.term()


def test_every_command_has_help_a_known_service_and_its_own_cli_name():
    assert {c.service for c in COMMANDS.values()} == {"orchestrator", "executor"}
    assert len({c.cli_name for c in COMMANDS.values()}) == len(COMMANDS)
    for c in COMMANDS.values():
        assert c.summary and c.summary[0].isupper(), c.name
    assert {"reset_halt", "reset_losses", "set_risk_config", "set_symbol_config", "clear_halt", "stop",
            "status"} <= set(COMMANDS)


def test_the_executor_handles_exactly_its_registered_commands():
    assert set(executor_commands.HANDLERS) == names_of("executor")


def test_every_executor_command_states_its_result_record_and_the_wire_table_is_theirs():
    stated = {name: COMMANDS[name].args.result for name in names_of("executor")}
    assert all(stated.values()), [n for n, r in stated.items() if r is None]
    assert messages.OP_COMMAND.result == messages.COMMAND_RESULTS
    assert messages.COMMAND_RESULTS.records == stated  # one definition: the wire decodes what each class states
    assert messages.COMMAND_RESULTS.default is None  # an unknown command in a reply is a wire error
    for record in set(stated.values()):
        assert dataclasses.fields(record)[0].name == "command", record.__name__


def test_the_orchestrator_handles_exactly_its_registered_commands(orchestrator):
    protocol = {messages.OP_HELLO.name, messages.OP_READY.name}  # the services' handshake, not an operator's
    assert set(orchestrator.ops()) == protocol | {COMMANDS[n].op for n in names_of("orchestrator")}


def test_a_handler_table_that_differs_from_the_registry_is_refused():
    handlers = dict(executor_commands.HANDLERS)
    del handlers["reset_halt"]
    with pytest.raises(LookupError, match=r"missing \['reset_halt'\]"):
        registry.handlers_for("executor", handlers)
    with pytest.raises(LookupError, match=r"not registered \['explode'\]"):
        registry.handlers_for("executor", {**executor_commands.HANDLERS, "explode": lambda ctx, a: None})


@pytest.mark.parametrize("name, raw, service, code, text", [
    ("explode", {}, "executor", "UNKNOWN_COMMAND", "'explode'; executor knows"),
    ("reset_halt", {}, "orchestrator", "UNKNOWN_COMMAND", "orchestrator knows clear_halt, status, stop"),
    ("close", {}, "executor", "BAD_ARGS", "close.symbol: Field required"),
    ("close", {"symbol": ""}, "executor", "BAD_ARGS", "close.symbol: String should have at least 1 character"),
    ("reset_halt", {"now": 1}, "executor", "BAD_ARGS", "reset_halt.now: Extra inputs are not permitted"),
    ("set_risk_config", {"changes": {}}, "executor", "BAD_ARGS", "set_risk_config.changes"),
    ("set_risk_config", {"config": {"dd_limit_pct": 4}}, "executor", "BAD_ARGS", "set_risk_config.changes"),
    ("set_symbol_config", {"changes": {"sl_usd": 1}}, "executor", "BAD_ARGS", "set_symbol_config.symbol"),
    ("stop", {"reason": ""}, "orchestrator", "BAD_ARGS", "stop.reason"),
])
def test_bad_arguments_are_refused_naming_the_argument(name, raw, service, code, text):
    with pytest.raises(CommandError) as info:
        registry.parse(name, raw, service)
    assert info.value.code == code and text in info.value.message


def test_the_wire_message_of_each_kind_of_command():
    command, args = registry.parse("set_risk_config", {"changes": {"dd_emergency_pct": 10.0}}, "executor")
    assert command.message(args) == ("command", messages.CommandArgs("set_risk_config",
                                                                     {"changes": {"dd_emergency_pct": 10.0}}))
    command, args = registry.parse("stop", {}, "orchestrator")
    assert command.message(args) == ("stop", messages.StopArgs("MANUAL"))
    command, args = registry.parse("clear_halt", None, "orchestrator")
    assert command.message(args) == ("clear_halt", messages.NoArgs())


def test_the_orchestrator_validates_a_command_before_running_it(orchestrator):
    ops = orchestrator.ops()
    with pytest.raises(bus.OpError) as info:
        ops["stop"](messages.StopArgs(""))
    assert info.value.code == "BAD_ARGS" and "stop.reason" in info.value.message
    assert orchestrator.stopping is False  # no effect
    assert ops["clear_halt"](messages.NoArgs()).was_halted == ""
    assert ops["stop"](messages.StopArgs("MANUAL")).state == messages.STOPPING and orchestrator.stopping


def ctl_args(*argv: str):
    return cli._parser().parse_args(["ctl", *argv])


def test_the_cli_parser_has_a_subcommand_per_command_whose_arguments_become_the_message():
    ns = ctl_args("set-risk-config", "dd_limit_pct=4", "max_consecutive_losses=3", "--json")
    command = COMMANDS[ns.ctl_command]
    assert command.name == "set_risk_config" and ns.json
    op, record = command.message(command.from_cli(ns))
    assert (op, record) == ("command", messages.CommandArgs("set_risk_config", {
        "changes": {"dd_limit_pct": 4, "max_consecutive_losses": 3}}))
    ns = ctl_args("set-symbol-config", "EURUSD", "enabled=true", "off_step=round_down")
    assert COMMANDS[ns.ctl_command].from_cli(ns).model_dump() == {
        "symbol": "EURUSD", "changes": {"enabled": True, "off_step": "round_down"}}
    ns = ctl_args("stop", "--reason", "MAINTENANCE")
    assert COMMANDS[ns.ctl_command].message(COMMANDS[ns.ctl_command].from_cli(ns)) == (
        "stop", messages.StopArgs("MAINTENANCE"))
    for command in COMMANDS.values():
        args = ["EURUSD"] if "symbol" in command.args.model_fields else []
        args += ["a=1"] if "changes" in command.args.model_fields else []
        assert ctl_args(command.cli_name, *args).ctl_command == command.name


@pytest.mark.parametrize("argv", [["--config", "c.yaml", "reset-halt"], ["reset-halt", "--config", "c.yaml"]])
def test_the_config_option_goes_before_or_after_the_command(argv):
    ns = ctl_args(*argv)
    assert (ns.ctl_command, ns.config, ns.overlay) == ("reset_halt", "c.yaml", None)


def test_a_setting_that_is_not_key_value_is_refused_naming_the_argument():
    ns = ctl_args("set-risk-config", "dd_limit_pct")
    with pytest.raises(CommandError, match=r"set_risk_config.changes: 'dd_limit_pct' is not KEY=VALUE"):
        COMMANDS[ns.ctl_command].from_cli(ns)


def test_ctl_help_lists_every_command_with_its_summary():
    res = subprocess.run([str(VENV / "bin" / "oracle"), "ctl", "--help"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "400"})  # one line per command
    assert res.returncode == 0, res.stderr
    flat = " ".join(res.stdout.split())
    for c in COMMANDS.values():
        assert f" {c.cli_name} {c.service}: {c.summary}" in flat, c.name


def test_a_result_is_typed_whether_the_reply_is_a_map_or_a_record():
    stop = COMMANDS["stop"]
    assert registry.CommandResult.answered(stop, {"state": "STOPPING"}).reply == {"state": "STOPPING"}
    record = messages.StepResult("executor.stop", True, {"closed": 0})
    result = registry.CommandResult.answered(stop, record)
    assert result.to_dict() == {"command": "stop", "service": "orchestrator", "ok": True, "error": "",
                                "reply": {"step": "executor.stop", "ok": True, "result": {"closed": 0}, "error": ""}}


def test_a_command_result_keeps_its_record_and_prints_its_plain_maps(capsys):
    closing = messages.Closing("close", [7], "EURUSD", [messages.Ack("EURUSD", 0, "OK", "MANUAL_CLOSE")])
    result = registry.CommandResult.answered(COMMANDS["close"], closing)
    assert result.record is closing
    assert result.reply == {"command": "close", "closing": [7], "symbol": "EURUSD", "acks": [
        {"symbol": "EURUSD", "bar_time": 0, "status": "OK", "reason": "MANUAL_CLOSE", "details": {}}]}
    assert result.to_dict()["reply"] == result.reply
    cli._print_result(result)
    assert capsys.readouterr().out.splitlines() == [
        "executor close: done", "  closing: [7]", "  symbol: EURUSD",
        '  acks: [{"symbol": "EURUSD", "bar_time": 0, "status": "OK", "reason": "MANUAL_CLOSE", "details": {}}]']
