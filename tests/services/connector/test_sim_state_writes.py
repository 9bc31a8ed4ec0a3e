"""The simulator writes its state file (the whole account: every deal and order) at each bar of its timeframe, each
fill and each rollover that charged swap, never at every instant: with positions open, a write per instant made
a month's replay slow down as the deal list grew (the soak, tests/system/test_soak.py, found it)."""

from __future__ import annotations

from pathlib import Path

from simclient import SimFactory, connected, next_event, run

from services.connector.port import OrderFilled
from services.connector.sim.control import acontrol

START = 130  # Monday 2017-01-09 08:00 UTC: the next rollover is at 22:00 UTC


def test_instants_without_a_bar_fill_or_rollover_write_no_state(sim_factory: SimFactory, tmp_path: Path) -> None:
    state = tmp_path / "sim-state.json"
    sim = sim_factory(start_bar=START, state_path=str(state))

    async def scenario() -> None:
        broker = await connected(sim)
        cp = sim.server.control_port
        assert (await broker.market_order("EURUSD", 1, 0.1, client_order_id="state-1")).success
        await next_event(broker, OrderFilled)
        await acontrol(cp, "advance", ticks=1)
        state.unlink()
        await acontrol(cp, "advance", ticks=30)  # half an hour of instants inside the H1 bar, a position open
        assert not state.exists(), "the state file was rewritten at an instant without a bar, fill or rollover"
        await acontrol(cp, "advance", bars=1)  # the next H1 bar: the state follows the clock bar by bar
        assert state.exists()
        await broker.close()

    run(scenario())
