from dataclasses import replace

import pytest

from services.executor.risk import (
    OpenContext,
    Quote,
    RiskAction,
    RiskState,
    check_open,
    drawdown,
    halt,
    on_close,
    on_equity,
    required_margin,
    reset_halt,
    reset_losses,
    spread_pips,
    start_session,
    watch,
)
from services.executor.symbols_config import RiskConfig

LIMITS = RiskConfig()  # dd 5 % / peak 7 % / emergency 10 %, 3 losses, 60 min, margin +20 %, quote 120 s
NOW = 1_000_000.0
QUOTE = Quote(bid=1.10000, ask=1.10010, time=NOW - 5)  # 1.0 pip
CTX = OpenContext(now=NOW, quote=QUOTE, pip_position=4, max_spread_pips=2.0, free_margin=1_000.0,
                  required_margin=36.67)
FRESH = start_session(10_000.0, 10_000.0)


def at_equity(*equities: float) -> RiskState:
    state = FRESH
    for equity in equities:
        state = on_equity(state, equity)
    return state


CASES = [
    # name, state, context changes, action, reason
    ("all clear", FRESH, {}, RiskAction.ALLOW, ""),
    ("halted", halt(FRESH, "restart storm"), {}, RiskAction.BLOCK, "HALTED"),
    ("emergency dd 10%", at_equity(9_000.0), {}, RiskAction.CLOSE_ALL_AND_HALT, "EMERGENCY_DD"),
    ("dd limit 5%", at_equity(9_500.0), {}, RiskAction.BLOCK, "DD_LIMIT"),
    ("dd 4.99% passes", at_equity(9_501.0), {}, RiskAction.ALLOW, ""),
    ("peak dd 7%", at_equity(11_000.0, 10_230.0), {}, RiskAction.BLOCK, "DD_PEAK_LIMIT"),
    ("peak dd 6.9% passes", at_equity(11_000.0, 10_241.0), {}, RiskAction.ALLOW, ""),
    ("equity unknown", on_equity(FRESH, None), {}, RiskAction.BLOCK, "NO_ACCOUNT_DATA"),
    ("no session balance", start_session(None), {}, RiskAction.BLOCK, "NO_ACCOUNT_DATA"),
    ("equity not yet known", start_session(10_000.0), {}, RiskAction.BLOCK, "NO_ACCOUNT_DATA"),
    ("equity known later", on_equity(start_session(10_000.0), 10_000.0), {}, RiskAction.ALLOW, ""),
    ("zero session balance", start_session(0.0, 0.0), {}, RiskAction.BLOCK, "NO_ACCOUNT_DATA"),
    ("cooldown running", replace(FRESH, cooldown_until=NOW + 1), {}, RiskAction.BLOCK, "COOLDOWN"),
    ("cooldown over", replace(FRESH, cooldown_until=NOW), {}, RiskAction.ALLOW, ""),
    ("no quote", FRESH, {"quote": None}, RiskAction.BLOCK, "NO_QUOTE"),
    ("bid missing", FRESH, {"quote": Quote(None, 1.1001, NOW)}, RiskAction.BLOCK, "NO_QUOTE"),
    ("quote without time", FRESH, {"quote": Quote(1.1, 1.1001, None)}, RiskAction.BLOCK, "NO_QUOTE"),
    ("crossed quote", FRESH, {"quote": Quote(1.1002, 1.1001, NOW)}, RiskAction.BLOCK, "BAD_QUOTE"),
    ("stale quote", FRESH, {"quote": Quote(1.1, 1.1001, NOW - 121)}, RiskAction.BLOCK, "STALE_QUOTE"),
    ("no pip data", FRESH, {"pip_position": None}, RiskAction.BLOCK, "NO_SYMBOL_DATA"),
    ("spread 2.5 > 2", FRESH, {"quote": Quote(1.10000, 1.10025, NOW)}, RiskAction.BLOCK, "SPREAD"),
    ("spread 2.0 = max", FRESH, {"quote": Quote(1.10000, 1.10020, NOW)}, RiskAction.ALLOW, ""),
    ("free margin missing", FRESH, {"free_margin": None}, RiskAction.BLOCK, "NO_MARGIN_DATA"),
    ("required margin missing", FRESH, {"required_margin": None}, RiskAction.BLOCK, "NO_MARGIN_DATA"),
    ("required margin zero", FRESH, {"required_margin": 0.0}, RiskAction.BLOCK, "NO_MARGIN_DATA"),
    ("margin short with buffer", FRESH, {"free_margin": 43.0}, RiskAction.BLOCK, "MARGIN"),
    ("margin enough with buffer", FRESH, {"free_margin": 44.1}, RiskAction.ALLOW, ""),
    # first failure wins
    ("halted beats emergency", halt(at_equity(8_000.0), "x"), {"quote": None}, RiskAction.BLOCK, "HALTED"),
    ("dd beats spread", at_equity(9_400.0), {"quote": None}, RiskAction.BLOCK, "DD_LIMIT"),
]


@pytest.mark.parametrize("name,state,changes,action,reason", CASES, ids=[c[0] for c in CASES])
def test_check_open(name, state, changes, action, reason):
    verdict = check_open(state, LIMITS, replace(CTX, **changes))
    assert (verdict.action, verdict.reason) == (action, reason)
    assert verdict.allowed == (action == RiskAction.ALLOW)


def test_watch_raises_emergency_once_then_halted():
    state = at_equity(8_900.0)
    verdict = watch(state, LIMITS)
    assert verdict.action == RiskAction.CLOSE_ALL_AND_HALT
    state = halt(state, verdict.reason)
    assert watch(state, LIMITS).reason == "HALTED"
    assert check_open(reset_halt(on_equity(state, 10_000.0)), LIMITS, CTX).allowed


def test_watch_quiet_without_data_or_drawdown():
    assert watch(FRESH, LIMITS).allowed
    assert watch(on_equity(FRESH, None), LIMITS).allowed  # check_open still fails closed


def test_peak_follows_equity():
    state = at_equity(10_500.0, 10_200.0, 10_700.0, 10_100.0)
    assert state.peak_equity == 10_700.0
    dd = drawdown(state)
    assert dd.from_start_pct == pytest.approx(-1.0)
    assert dd.from_peak_pct == pytest.approx(600 / 10_700 * 100)


def test_session_start_peak_uses_higher_of_balance_and_equity():
    assert start_session(10_000.0, 10_250.0).peak_equity == 10_250.0
    assert start_session(10_000.0, 9_900.0).peak_equity == 10_000.0


LOSS_SEQUENCES = [
    # pnl list, consecutive losses after, cooldown started
    ([-1.0], 1, False),
    ([-1.0, -2.0], 2, False),
    ([-1.0, -2.0, -3.0], 0, True),
    ([-1.0, -2.0, 0.0, -3.0], 1, False),  # break-even ends the streak
    ([-1.0, 5.0, -1.0, -1.0], 2, False),
]


@pytest.mark.parametrize("pnls,losses,cooldown", LOSS_SEQUENCES)
def test_consecutive_losses(pnls, losses, cooldown):
    state = FRESH
    for i, pnl in enumerate(pnls):
        state = on_close(state, pnl, NOW + i, LIMITS, close_id=f"pos{i}")
    assert state.consecutive_losses == losses
    assert (state.cooldown_until is not None) == cooldown


def test_cooldown_blocks_then_expires_and_counts_broker_closes_once():
    state = FRESH
    for i in range(3):
        state = on_close(state, -10.0, NOW, LIMITS, close_id=f"sl-hit-{i}")
        state = on_close(state, -10.0, NOW, LIMITS, close_id=f"sl-hit-{i}")  # the same close seen twice
    assert state.cooldown_until == NOW + 3600
    assert check_open(state, LIMITS, replace(CTX, now=NOW + 3599)).reason == "COOLDOWN"
    later = replace(CTX, now=NOW + 3600, quote=replace(QUOTE, time=NOW + 3590))
    assert check_open(state, LIMITS, later).allowed
    assert check_open(reset_losses(state), LIMITS, CTX).allowed


def test_duplicate_close_ids_are_ignored():
    state = on_close(FRESH, -1.0, NOW, LIMITS, close_id="42")
    assert on_close(state, -1.0, NOW, LIMITS, close_id="42") == state


def test_state_round_trip():
    state = on_close(halt(at_equity(10_300.0), "manual"), -1.0, NOW, LIMITS, close_id="7")
    assert RiskState.from_dict(state.to_dict()) == state


@pytest.mark.parametrize("lots,size,price,rate,leverage,margin", [
    (0.01, 100_000, 1.1, 1.0, 30.0, 1000 * 1.1 / 30),  # EURUSD 0.01 lot
    (0.01, 100_000, 160.0, 1 / 160, 30.0, 1000 / 30),  # USDJPY 0.01 lot: 1000 USD notional
    (0.1, 1, 5_000.0, 1.0, 20.0, 0.1 * 5_000 / 20),  # US500 0.1 unit
    (0.05, 100, 2_000.0, 1.0, 20.0, 5 * 2_000 / 20),  # XAUUSD 0.05 lot = 5 oz
    (None, 100_000, 1.1, 1.0, 30.0, None),
    (0.01, None, 1.1, 1.0, 30.0, None),
    (0.01, 100_000, 0.0, 1.0, 30.0, None),
    (0.01, 100_000, 1.1, None, 30.0, None),
    (0.01, 100_000, 1.1, 1.0, 0.0, None),
])
def test_required_margin(lots, size, price, rate, leverage, margin):
    result = required_margin(lots, size, price, rate, leverage)
    assert result == (pytest.approx(margin) if margin is not None else None)


def test_spread_pips():
    assert spread_pips(Quote(150.000, 150.012, NOW), 2) == pytest.approx(1.2)
    assert spread_pips(Quote(None, 150.0, NOW), 2) is None
