from dataclasses import replace

import pytest

from common import commands as registry
from common import messages
from common.order_label import OrderAction, parse_client_order_id
from services.executor.commands import HANDLERS, CommandContext, CommandError, RealPosition, run
from services.executor.risk import halt, on_close, start_session
from services.executor.symbols_config import RiskConfig, parse
from services.executor.sync import Direction

CONFIG = parse({"_version": 1, "_risk": {}, "_default": {"sl_usd": 10.0},
                "EURUSD": {"enabled": True}, "USDJPY": {"enabled": False}})
POSITIONS = (
    RealPosition(11, "EURUSD", Direction.LONG, 0.01, "OT1|..."),
    RealPosition(12, "XAUUSD", Direction.SHORT, 0.01, "manual"),  # orphan: no model
    RealPosition(10, "EURUSD", Direction.SHORT, 0.03),
)
NOW = 1_764_115_200
CTX = CommandContext(now=NOW, paused=False, risk=start_session(10_000.0), config=CONFIG, positions=POSITIONS,
                     modelled_symbols=frozenset({"EURUSD", "USDJPY", "GBPUSD"}),
                     last_decisions={"EURUSD": "SYNCED"})


@pytest.mark.parametrize("name,args,paused", [
    ("pause", {}, True),
    ("resume", {}, False),
])
def test_pause_resume(name, args, paused):
    for start in (False, True):
        ctx = CommandContext(NOW, start, CTX.risk, CONFIG)
        result = run(name, args, ctx)
        assert result.paused == paused and result.closes == ()
        expected = messages.Paused("pause", True, start) if paused else messages.Resumed("resume", False, False)
        assert result.reply == expected


def test_resume_does_not_lift_a_halt():
    ctx = CommandContext(NOW, True, halt(CTX.risk, "EMERGENCY_DD"), CONFIG)
    result = run("resume", {}, ctx)
    assert result.paused is False and result.risk.halted
    assert result.reply == messages.Resumed("resume", paused=False, halted=True)
    lifted = run("reset_halt", {}, ctx)
    assert lifted.risk.halted is False
    assert lifted.reply == messages.HaltReset("reset_halt", halted=False, was="EMERGENCY_DD")


def test_the_systems_halt_stays_halted_after_resume_and_reset_halt():
    ctx = CommandContext(NOW, True, CTX.risk, CONFIG, system_halted=True)
    assert run("resume", {}, ctx).reply.halted is True
    assert run("reset_halt", {}, ctx).reply == messages.HaltReset("reset_halt", halted=True, was="")
    assert run("executor_status", {}, ctx).reply.halted is True


@pytest.mark.parametrize("name,args,tickets", [
    ("close", {"symbol": "EURUSD"}, [10, 11]),
    ("close", {"symbol": "XAUUSD"}, [12]),  # an orphan is closed only this way
    ("close", {"symbol": "GBPUSD"}, []),
    ("close_all", {}, [10, 11, 12]),
])
def test_close_commands(name, args, tickets):
    result = run(name, args, CTX)
    assert [c.ticket for c in result.closes] == tickets
    assert result.reply == messages.Closing(name, tickets, args.get("symbol", ""))
    assert result.reply.acks == []  # the service adds them once the closes are sent
    for order in result.closes:
        cid = parse_client_order_id(order.client_order_id)
        assert cid.is_for(order.symbol) and cid.action == OrderAction.MANUAL_CLOSE
        assert (cid.bar_time, cid.seq) == (NOW, order.ticket)
    assert len({c.client_order_id for c in result.closes}) == len(tickets)
    assert result.paused is False  # closing never changes pause


def test_set_symbol_config():
    result = run("set_symbol_config", {"symbol": "USDJPY", "changes": {"enabled": True, "sl_usd": 12.0}}, CTX)
    assert result.config_changed
    assert result.config.symbol("USDJPY").enabled and result.config.symbol("USDJPY").sl_usd == 12.0
    assert CTX.config.symbol("USDJPY").enabled is False
    assert result.reply == messages.SymbolConfigSet("set_symbol_config", "USDJPY",
                                                    result.config.symbol("USDJPY").model_dump())
    assert result.reply.config["sl_usd"] == 12.0


@pytest.mark.parametrize("name,args,code,text", [
    ("explode", {}, "UNKNOWN_COMMAND", "explode"),
    ("close", {}, "BAD_ARGS", "close.symbol"),
    ("close", {"symbol": ""}, "BAD_ARGS", "close.symbol"),
    ("pause", {"now": 1}, "BAD_ARGS", "pause.now"),
    ("set_symbol_config", {"symbol": "EURUSD"}, "BAD_ARGS", "set_symbol_config.changes"),
    ("set_symbol_config", {"symbol": "EURUSD", "changes": {"lot_weak": -1}}, "BAD_CONFIG", "EURUSD.lot_weak"),
    ("set_symbol_config", {"symbol": "EURUSD", "changes": {"colour": "red"}}, "BAD_CONFIG", "EURUSD.colour"),
    ("set_risk_config", {"changes": {"dd_limit_pct": 0}}, "BAD_CONFIG", "_risk.dd_limit_pct"),
])
def test_refused_commands_name_the_key(name, args, code, text):
    with pytest.raises(CommandError) as info:
        run(name, args, CTX)
    assert info.value.code == code
    assert text in str(info.value)


def test_set_risk_config():
    result = run("set_risk_config", {"changes": {"max_consecutive_losses": 4}}, CTX)
    assert result.config.risk.max_consecutive_losses == 4 and result.config_changed
    assert result.reply == messages.RiskConfigSet("set_risk_config", result.config.risk.model_dump())


def test_reset_losses():
    risk = CTX.risk
    for i in range(3):
        risk = on_close(risk, -1.0, NOW, RiskConfig(), close_id=str(i))
    assert risk.cooldown_until is not None
    ctx = CommandContext(NOW, False, risk, CONFIG)
    result = run("reset_losses", None, ctx)
    assert result.risk.cooldown_until is None
    assert result.reply == messages.LossesReset("reset_losses", 0)


def test_status():
    reply = run("executor_status", {}, CTX).reply
    assert isinstance(reply, messages.TradingState) and reply.command == "executor_status"
    assert (reply.paused, reply.halted, reply.halt_reason, reply.consecutive_losses) == (False, False, "", 0)
    assert reply.orphans == ["XAUUSD"]
    assert reply.positions == [messages.TradingPosition(11, "EURUSD", 1, 0.01, "OT1|..."),
                               messages.TradingPosition(12, "XAUUSD", -1, 0.01, "manual"),
                               messages.TradingPosition(10, "EURUSD", -1, 0.03, "")]
    assert reply.modelled == ["EURUSD", "GBPUSD", "USDJPY"]
    assert set(reply.symbols) == {"EURUSD", "USDJPY", "GBPUSD"}
    assert reply.symbols["GBPUSD"].enabled is False  # no entry: default, disabled
    assert reply.symbols["EURUSD"] == messages.TradingSymbol(True, [0.01, 0.03, 0.05], 10.0, 0.0, 2.0, "refuse",
                                                             True, "SYNCED")
    assert reply.risk == messages.RiskStatus(session_start_balance=10_000.0, peak_equity=10_000.0, equity=None)
    assert messages.from_wire(messages.OP_COMMAND.result, messages.to_wire(reply)) == reply


@pytest.mark.parametrize("name, args", [
    ("pause", {}), ("resume", {}), ("close", {"symbol": "EURUSD"}), ("close_all", {}), ("reset_halt", {}),
    ("reset_losses", {}), ("set_symbol_config", {"symbol": "EURUSD", "changes": {"sl_usd": 9.0}}),
    ("set_risk_config", {"changes": {"dd_limit_pct": 4.0}}), ("executor_status", {}),
])
def test_every_handler_replies_its_commands_result_record(name, args):
    reply = run(name, args, replace(CTX, paused=True)).reply
    assert type(reply) is registry.COMMANDS[name].args.result and reply.command == name


def test_every_executor_command_of_the_registry_has_a_handler_and_no_other():
    assert set(HANDLERS) == {c.name for c in registry.COMMANDS.values() if c.service == "executor"}


def test_an_orchestrator_command_is_unknown_here():
    with pytest.raises(CommandError) as info:
        run("stop", {}, CTX)
    assert info.value.code == "UNKNOWN_COMMAND" and "executor knows" in str(info.value)
