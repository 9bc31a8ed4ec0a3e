from dataclasses import replace

import pytest

from common.order_label import OrderAction, parse, parse_client_order_id
from services.executor.acks import AckStatus
from services.executor.commands import RealPosition
from services.executor.lots import VolumeLimits
from services.executor.plan import SignalInputs, plan_signal, real_stance
from services.executor.risk import Quote, on_equity, start_session
from services.executor.sltp import PriceData
from services.executor.symbols_config import RiskConfig, SymbolConfig
from services.executor.sync import FLAT, Direction, Stance, SyncAction

L, S = Direction.LONG, Direction.SHORT
NOW = 1_764_115_200.0
BAR = 1_764_114_300
EURUSD_CFG = SymbolConfig(enabled=True, sl_usd=10.0, tp_usd=15.0, max_spread_pips=2.0)
FX = VolumeLimits(min_lots=0.01, step_lots=0.01, max_lots=100.0, contract_size=100_000)
EURUSD_PRICES = PriceData(digits=5, pip_position=4, quote_to_deposit=1.0)

BASE = SignalInputs(
    symbol="EURUSD", bar_time=BAR, signal=Stance(L, 1), previous=FLAT, positions=(), modelled=True,
    paused=False, config=EURUSD_CFG, risk_limits=RiskConfig(), risk=start_session(10_000.0, 10_000.0), now=NOW,
    quote=Quote(1.10000, 1.10008, NOW - 1), volume_limits=FX, price_data=EURUSD_PRICES, balance=10_234.56,
    free_margin=9_000.0, leverage=30.0, action_index=1, hmm_state=3, virtual_pnl=1.234, model_hash="a1b2c3d4")

P_LONG_1 = RealPosition(101, "EURUSD", L, 0.01)
P_LONG_3 = RealPosition(102, "EURUSD", L, 0.05)
P_SHORT = RealPosition(103, "EURUSD", S, 0.01)
P_ORPHAN = RealPosition(200, "XAUUSD", S, 0.01)


def test_edge_opens_with_stops_label_and_id():
    plan = plan_signal(BASE)
    assert plan.decision.action == SyncAction.OPEN and plan.ack is None and plan.closes == ()
    order = plan.open
    assert (order.direction, order.lots) == (L, 0.01)
    assert (order.sl_distance, order.tp_distance) == (0.01, 0.015)  # 10 / 15 USD at 0.01 lot
    assert (order.requested_lots, order.off_step) == (None, None)  # on the step
    cid = parse_client_order_id(order.client_order_id)
    assert (cid.bar_time, cid.action, cid.is_for("EURUSD")) == (BAR, OrderAction.OPEN, True)
    label = parse(order.label)
    assert label.client_order_id == order.client_order_id
    assert (label.hmm_state, label.action_index, label.intensity) == (3, 1, 1)
    assert (label.balance, label.drawdown_pct, label.virtual_pnl, label.spread_pips) == (10_234, 0.0, 1.23, 0.8)
    assert label.model_hash == "a1b2c3d4"


def test_same_signal_twice_gives_the_same_order_id():
    assert plan_signal(BASE).open.client_order_id == plan_signal(BASE).open.client_order_id


# name, changes, action, ack status, ack reason
NO_ORDER = [
    ("synced", {"positions": (P_LONG_1,), "previous": Stance(L, 1)}, SyncAction.NOOP, AckStatus.OK, "SYNCED"),
    ("intensity from volume", {"positions": (P_LONG_3,), "signal": Stance(L, 1)}, SyncAction.NOOP,
     AckStatus.OK, "INTENSITY_IGNORED"),
    ("missed entry", {"previous": Stance(L, 2)}, SyncAction.WAIT_SYNC, AckStatus.WAIT_SYNC, "MISSED_ENTRY"),
    ("first after boot", {"previous": None}, SyncAction.WAIT_SYNC, AckStatus.WAIT_SYNC, "FIRST_SIGNAL"),
    ("paused", {"paused": True}, SyncAction.SKIP, AckStatus.SKIP, "PAUSED"),
    ("disabled", {"config": EURUSD_CFG.model_copy(update={"enabled": False})}, SyncAction.SKIP,
     AckStatus.SKIP, "DISABLED"),
    ("orphan", {"symbol": "XAUUSD", "modelled": False, "positions": (P_ORPHAN,)}, SyncAction.SKIP,
     AckStatus.SKIP, "ORPHAN"),
    ("lots off step", {"config": EURUSD_CFG.model_copy(update={"lot_weak": 0.015})}, SyncAction.OPEN,
     AckStatus.SKIP, "OFF_STEP"),
    ("no volume data", {"volume_limits": None}, SyncAction.OPEN, AckStatus.SKIP, "NO_SYMBOL_DATA"),
    ("spread", {"quote": Quote(1.10000, 1.10030, NOW)}, SyncAction.OPEN, AckStatus.SKIP, "SPREAD"),
    ("no quote", {"quote": None}, SyncAction.OPEN, AckStatus.SKIP, "NO_QUOTE"),
    ("margin", {"free_margin": 40.0}, SyncAction.OPEN, AckStatus.SKIP, "MARGIN"),
    ("no leverage nor broker margin", {"leverage": None}, SyncAction.OPEN, AckStatus.SKIP, "NO_MARGIN_DATA"),
    ("dd limit", {"risk": on_equity(start_session(10_000.0), 9_400.0)}, SyncAction.OPEN, AckStatus.SKIP,
     "DD_LIMIT"),
    ("no rate for SL", {"price_data": PriceData(5, 4, None), "broker_required_margin": 40.0}, SyncAction.OPEN,
     AckStatus.SKIP, "NO_SYMBOL_DATA"),
]


@pytest.mark.parametrize("name,changes,action,status,reason", NO_ORDER, ids=[r[0] for r in NO_ORDER])
def test_no_order(name, changes, action, status, reason):
    plan = plan_signal(replace(BASE, **changes))
    assert plan.decision.action == action
    assert plan.open is None and plan.closes == () and not plan.halt
    assert (plan.ack.status, plan.ack.reason, plan.ack.bar_time) == (status, reason, BAR)


def test_broker_margin_preferred_over_estimate():
    assert plan_signal(replace(BASE, leverage=None, broker_required_margin=37.0)).open is not None
    assert plan_signal(replace(BASE, broker_required_margin=9_000.0)).ack.reason == "MARGIN"


@pytest.mark.parametrize("name,positions,signal,tickets,action", [
    ("wait closes", (P_LONG_1,), FLAT, [101], SyncAction.CLOSE),
    ("reversal closes then waits", (P_LONG_1,), Stance(S, 2), [101], SyncAction.CLOSE_THEN_WAIT),
    ("hedged: every position closed", (P_LONG_3, P_LONG_1), FLAT, [101, 102], SyncAction.CLOSE),
    ("mixed directions closed", (P_SHORT, P_LONG_1, P_ORPHAN), Stance(L, 1), [101, 103],
     SyncAction.CLOSE_THEN_WAIT),
])
def test_closes(name, positions, signal, tickets, action):
    for paused in (False, True):  # pause never blocks a close
        plan = plan_signal(replace(BASE, positions=positions, signal=signal, paused=paused,
                                   risk=on_equity(BASE.risk, 8_000.0)))  # nor does the risk guard
        assert plan.decision.action == action
        assert [c.ticket for c in plan.closes] == tickets
        assert plan.open is None and plan.ack is None and not plan.halt
        for close in plan.closes:
            cid = parse_client_order_id(close.client_order_id)
            assert (cid.action, cid.bar_time, cid.seq) == (OrderAction.CLOSE, BAR, close.ticket)


def test_emergency_drawdown_closes_everything_and_halts():
    positions = (P_ORPHAN, RealPosition(300, "USDJPY", L, 0.01))
    plan = plan_signal(replace(BASE, positions=positions, risk=on_equity(BASE.risk, 8_999.0)))
    assert plan.halt and plan.open is None
    assert [c.ticket for c in plan.closes] == [200, 300]
    actions = {parse_client_order_id(c.client_order_id).action for c in plan.closes}
    assert actions == {OrderAction.EMERGENCY_CLOSE}
    assert (plan.ack.status, plan.ack.reason) == (AckStatus.SKIP, "EMERGENCY_DD")


@pytest.mark.parametrize("positions,signal,expected", [
    ((), Stance(L, 1), FLAT),
    ((P_LONG_1,), Stance(L, 2), Stance(L, 1)),
    ((P_LONG_3,), Stance(L, 2), Stance(L, 3)),
    ((RealPosition(9, "EURUSD", L, 0.02),), Stance(L, 1), Stance(L, 0)),  # lots of no intensity
    ((RealPosition(9, "EURUSD", L, 0.02), RealPosition(8, "EURUSD", L, 0.01)), Stance(L, 1), Stance(L, 2)),
    ((P_LONG_1, P_SHORT), Stance(L, 1), Stance(S, 0)),
    ((P_LONG_1, P_SHORT), Stance(S, 1), Stance(L, 0)),
])
def test_real_stance(positions, signal, expected):
    assert real_stance(positions, signal, EURUSD_CFG, FX) == expected


def test_an_opening_tells_its_margin_and_openings_decided_together_share_the_free_margin():
    from services.executor.batch import Batch
    from services.executor.inputs import AccountData

    first = plan_signal(replace(BASE, broker_required_margin=3_000.0))
    assert first.open is not None and first.required_margin == 3_000.0
    asked = []
    batch = Batch(committed_margin=1_000.0)  # an opening of a batch still in flight
    account = AccountData(balance=10_000.0, equity=10_000.0, free_margin=5_000.0, leverage=100.0)

    def fetch(_now: float) -> AccountData:
        asked.append(_now)
        return account

    assert batch.account(fetch, 1.0).free_margin == 4_000.0
    batch.committed_margin += first.required_margin
    second = batch.account(fetch, 2.0)
    assert second.free_margin == 1_000.0 and second.balance == 10_000.0 and asked == [1.0]  # asked once
    assert plan_signal(replace(BASE, broker_required_margin=3_000.0, free_margin=second.free_margin)).ack.reason \
        == "MARGIN"


def test_off_step_lots_refused_by_default_say_what_was_asked():
    plan = plan_signal(replace(BASE, config=EURUSD_CFG.model_copy(update={"lot_weak": 0.015})))
    assert (plan.ack.status, plan.ack.reason) == (AckStatus.SKIP, "OFF_STEP")
    assert (plan.ack.requested_lots, plan.ack.off_step) == (0.015, "refuse")
    assert plan.ack.wire_body()["details"]["requested_lots"] == 0.015


def test_off_step_lots_rounded_down_when_the_symbol_says_so():
    cfg = EURUSD_CFG.model_copy(update={"lot_weak": 0.015, "off_step": "round_down"})
    order = plan_signal(replace(BASE, config=cfg)).open
    assert (order.lots, order.requested_lots, order.off_step) == (0.01, 0.015, "round_down")
    assert order.sl_distance == 0.01  # the stop is sized on the lots sent: 10 USD at 0.01 lot
    # a skip after the rounding still says it
    skipped = plan_signal(replace(BASE, config=cfg, quote=None))
    assert (skipped.ack.reason, skipped.ack.requested_lots, skipped.ack.off_step) == ("NO_QUOTE", 0.015,
                                                                                      "round_down")


def test_the_margin_estimate_uses_the_contract_size():
    plan = plan_signal(replace(BASE, signal=Stance(L, 2)))  # 0.03 lot of EURUSD at 1.10008, leverage 30
    assert plan.required_margin == pytest.approx(0.03 * 100_000 * 1.10008 / 30)


def test_broker_minimum_distances_per_kind():
    assert plan_signal(replace(BASE, min_sl_distance=0.005, min_tp_distance=0.01)).open is not None
    assert plan_signal(replace(BASE, min_tp_distance=0.02)).ack.reason == "SLTP_TOO_CLOSE"
