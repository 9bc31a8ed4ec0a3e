"""The connector's files on disk: the published state as a snapshot and a journal of its changed sections (one line
per batch, common/durable.py JournaledState), the state file of old read and carried on, torn last lines recovered,
and the bridge's group commit (orders held until their journal lines are durable, answers given once their outcome
is)."""

from __future__ import annotations

import asyncio
import json
import logging
import select
import time
from pathlib import Path

import pytest

from common import bus, config, durable, messages
from services.connector.bridge import Bridge
from services.connector.service import Connector
from services.connector.state import ConnectorState

# the whole-file state document as main wrote it (ConnectorState.to_json, v 1)
OLD_STATE = {
    "v": 1,
    "last": {"EURUSD.H1": 7200, "SYN01.H1": 3600},
    "subscriptions": {"EURUSD": ["H1"], "SYN01": ["H1"]},
    "positions": {"11": {"symbol": "EURUSD", "direction": 1, "open_time": 100.0, "label": "c-1", "comment": "",
                         "recorded": True}},
}


@pytest.fixture
def cfg(tmp_path: Path) -> config.Config:
    return config.Config.model_validate(
        {"version": "2", "home": str(tmp_path), "connector": {"publish_grace_s": 0}})


def _connector(cfg: config.Config) -> Connector:
    return Connector(cfg)


def _state_path(cfg: config.Config) -> Path:
    return cfg.path(cfg.data_dir) / cfg.connector.state_file


def test_the_state_file_of_old_is_read_and_carried_on(cfg):
    path = _state_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(OLD_STATE, sort_keys=True))
    c = _connector(cfg)
    assert json.loads(c.published.to_json()) == OLD_STATE
    c.published.record("EURUSD", "H1", 10800)
    c.published.closed(11)
    c._commit()
    c.on_stop()
    again = _connector(cfg).published
    assert again.last == {"EURUSD.H1": 10800, "SYN01.H1": 3600}
    assert again.positions == {} and again.subscriptions == OLD_STATE["subscriptions"]
    # converted at the first commit: a snapshot of the journal's format, in the format of old with its number
    assert json.loads(path.read_text()) == {**json.loads(again.to_json()), durable.SEQ_KEY: 0}


def test_a_compaction_writes_the_whole_state_in_the_old_format(cfg, monkeypatch):
    monkeypatch.setattr("services.connector.service.STATE_COMPACT_AFTER", 2)
    c = _connector(cfg)
    for t in (3600, 7200, 10800, 14400):
        c.published.record("EURUSD", "H1", t)
        c._commit()
    assert c.progress["state_compactions"] == 2  # the first snapshot, then the fourth: two lines in the journal
    assert ConnectorState.from_json(_state_path(cfg).read_text()).last == {"EURUSD.H1": 14400}
    c.published.record("EURUSD", "H1", 18000)
    c._commit()
    assert _connector(cfg).published.last == {"EURUSD.H1": 18000}


def test_a_torn_last_state_change_is_cut_off_and_the_state_goes_on(cfg):
    c = _connector(cfg)
    c.published.record("EURUSD", "H1", 3600)
    c._commit()
    c.on_stop()
    journal = durable.journal_path_of(_state_path(cfg))
    with open(journal, "ab") as f:
        f.write(b'{"seq":1,"set":{"last":{"EURUSD.H1":72')  # a commit killed halfway: never acknowledged
    c = _connector(cfg)
    assert c.published.last == {"EURUSD.H1": 3600}
    c.published.record("EURUSD", "H1", 10800)
    c._commit()
    assert _connector(cfg).published.last == {"EURUSD.H1": 10800}


def test_a_torn_last_order_journal_line_is_cut_off(cfg):
    path = cfg.path(cfg.data_dir) / cfg.connector.journal_file
    path.parent.mkdir(parents=True, exist_ok=True)
    done = {"cid": "a", "kind": "open", "status": "done", "ts": 1.0, "request": {}, "result": {"success": True}}
    path.write_text(json.dumps(done) + '\n{"cid": "b", "kind": "op')
    c = _connector(cfg)
    assert len(c.ledger) == 1
    assert path.read_text() == json.dumps(done) + "\n"


def test_the_bars_of_one_drain_are_made_durable_with_one_commit_then_published(cfg, tmp_path):
    c = _connector(cfg)
    symbols = [f"SYN{i:02d}" for i in range(20)]
    for s in symbols:
        c.published.subscribe(s, "H1")
    c._commit()
    c.pub = bus.Publisher(c.ctx, f"ipc://{tmp_path}/pub", "connector", c.epoch)
    try:
        commits = c.progress["state_commits"]
        for s in symbols:
            c.bridge.put(messages.Bar(s, "H1", 3600, 1.0, 1.0, 1.0, 1.0, 1.0))
        c._drain_events()
        assert c.progress["state_commits"] == commits + 1
        assert c.progress["bars_published"] == 20
        journal = Path(durable.journal_path_of(_state_path(cfg))).read_text().splitlines()
        assert json.loads(journal[-1])["set"] == {"last": {f"{s}.H1": 3600 for s in symbols}}
    finally:
        c.pub.close()


async def _order(ran: list[str], cid: str) -> str:
    ran.append(cid)
    return cid


def _answered(bridge: Bridge) -> list:
    while not (ready := bridge.answered_now()):
        bridge.step()  # the broker loop, stepped as the connector's loop does: its answer wakes the loop
        select.select([bridge.wake_fd], [], [], 5.0)
        bridge.woken()
    return ready


def test_held_orders_leave_on_release_and_are_answered_once_settled(cfg):
    bridge = Bridge(lambda: None, lambda: False)
    bridge.start()
    try:
        ran: list[str] = []
        settled: list[str] = []
        d1 = bridge.defer(_order(ran, "a"), lambda r: settled.append(r) or r.upper(), "order a", 30.0, hold=True)
        d2 = bridge.defer(_order(ran, "b"), lambda r: settled.append(r) or r.upper(), "order b", 30.0, hold=True)
        assert bridge.has_held and bridge.answered_now() == []
        assert bridge.release() == 2
        assert sorted(ran) == ["a", "b"]  # written to the broker before release returns: no other thread to wait for
        ready = _answered(bridge)
        while len(ready) < 2:
            ready += _answered(bridge)
        assert sorted(settled) == ["a", "b"] and sorted(ran) == ["a", "b"]
        assert not d1.future.done() and not d2.future.done()  # settled, not answered before it is durable
        bridge.answer(ready)
        assert (d1.finish(d1.future), d2.finish(d2.future)) == ("A", "B")
        joined = Bridge.joined(d1)
        assert joined.finish(joined.future) == "A"
    finally:
        bridge.stop()


def test_held_orders_refused_never_leave(cfg):
    bridge = Bridge(lambda: None, lambda: False)
    bridge.start()
    try:
        ran: list[str] = []
        d = bridge.defer(_order(ran, "a"), lambda r: r, "order a", 30.0, hold=True)
        bridge.refuse_held(bus.OpError("internal", "cannot write the order journal"))
        with pytest.raises(bus.OpError, match="order journal"):
            d.finish(d.future)
        assert bridge.release() == 0 and bridge.answered_now() == []
        assert ran == []
    finally:
        bridge.stop()


def test_the_work_done_is_summarized_in_one_line_and_nothing_done_says_nothing(cfg, caplog):
    c = _connector(cfg)
    c.count("bars_published", 20)
    c.count("orders", 3)
    with caplog.at_level(logging.INFO, logger="oracle.connector"):
        c._log_summary()
        c._log_summary()
    lines = [r for r in caplog.records if r.name == "oracle.connector"]
    assert len(lines) == 1
    assert lines[0].fields == {"bars_published": 20, "orders": 3}


def test_an_unreadable_snapshot_is_replaced_so_the_changes_after_it_are_kept(cfg):
    path = _state_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    c = _connector(cfg)
    assert c.published == ConnectorState()
    c.published.record("EURUSD", "H1", 3600)
    c._commit()
    assert _connector(cfg).published.last == {"EURUSD.H1": 3600}


def test_each_change_names_its_section_and_reaches_the_file(tmp_path) -> None:
    """The state names the sections it changed; committed with them alone, every change is read back."""
    path = tmp_path / "connector-state.json"
    store = durable.JournaledState(path)
    state = ConnectorState()
    store.commit(state.to_dict(), compact=True)
    steps = [
        (lambda: state.subscribe("EURUSD", "H1"), {"subscriptions"}),
        (lambda: state.record("EURUSD", "H1", 3600), {"last"}),
        (lambda: state.opened(7, "EURUSD", 1, 3600.0, "L", recorded=False), {"positions"}),
        (lambda: state.opened(7, "EURUSD", 1, 3600.0, "L", recorded=True), {"positions"}),
        (lambda: state.closed(7), {"positions"}),
    ]
    for change, sections in steps:
        change()
        assert state.changed == sections and state.dirty
        store.commit(state.to_dict(), changed=state.changed)
        state.committed()
        assert not state.dirty
        raw, _notes = durable.JournaledState(path).load()
        assert ConnectorState.from_dict(raw) == state


def test_a_turn_makes_its_events_answers_and_held_orders_durable_with_one_commit_then_says_them(cfg, tmp_path):
    c = _connector(cfg)
    c.published.subscribe("EURUSD", "H1")
    c._commit()
    c.pub = bus.Publisher(c.ctx, f"ipc://{tmp_path}/pub", "connector", c.epoch)
    c.bridge.start()
    try:
        ran: list[str] = []

        def settle(result: str) -> str:  # as an order's outcome settles: its done line, the position it opened
            c.orders_log.add(json.dumps({"cid": result, "status": "done"}))
            c.published.opened(7, "EURUSD", 1, 100.0, result)
            return result.upper()

        answered = c.bridge.defer(_order(ran, "a"), settle, "order a", 30.0)
        while not c.bridge._out[0].sent.done():  # the broker loop's answer wakes the loop
            c.bridge.step()
            select.select([c.bridge.wake_fd], [], [], 5.0)
            c.bridge.woken()
        held = c.bridge.defer(_order(ran, "b"), lambda r: r, "order b", 30.0, hold=True)
        c.orders_log.add(json.dumps({"cid": "b", "status": "sent"}))  # its line: durable before it leaves
        c.bridge.put(messages.Bar("EURUSD", "H1", 3600, 1.0, 1.0, 1.0, 1.0, 1.0))
        commits = (c.progress.get("journal_commits", 0), c.progress.get("state_commits", 0))
        c._turn()
        assert (c.progress["journal_commits"], c.progress["state_commits"]) == (commits[0] + 1, commits[1] + 1)
        assert c.progress["bars_published"] == 1 and not c.bridge.has_held
        assert answered.finish(answered.future) == "A"  # given once its done line and its position are durable
        state = [json.loads(line)["set"] for line in
                 Path(durable.journal_path_of(_state_path(cfg))).read_text().splitlines()]
        assert state[-1]["last"] == {"EURUSD.H1": 3600} and "7" in state[-1]["positions"]
        journal_lines = (cfg.path(cfg.data_dir) / cfg.connector.journal_file).read_text().splitlines()
        assert [json.loads(line)["cid"] for line in journal_lines[-2:]] == ["b", "a"]  # sent before, done in the turn
        assert ran == ["a", "b"]  # the held order left after the commit, within the turn
        while not held.future.done():
            c.bridge.step()
            select.select([c.bridge.wake_fd], [], [], 5.0)
            c.bridge.woken()
            c.bridge.answer(c.bridge.answered_now())
        assert ran == ["a", "b"]
    finally:
        c.pub.close()
        c.bridge.stop()


def test_the_loop_sleeps_no_longer_than_the_broker_loops_next_timer(cfg):
    c = _connector(cfg)
    assert c.poll_timeout_ms() == 100  # no broker loop yet: the loop's own tick
    c.bridge.start()
    try:
        async def paced() -> None:  # as a rate limit's wait or a history page's pacing, on the broker loop
            await asyncio.sleep(0.03)

        fut = c.bridge.submit(paced())
        assert c.poll_timeout_ms() == 0  # its task is ready: run it now
        c.bridge.step()
        assert 0 < c.poll_timeout_ms() <= 30
        while not fut.done():
            select.select([c.bridge.io_fd], [], [], c.poll_timeout_ms() / 1000)
            c.bridge.step()
    finally:
        c.bridge.stop()


def test_the_loops_tick_steps_the_broker_loop_only_when_something_there_is_due(cfg, tmp_path):
    c = _connector(cfg)
    c.pub = bus.Publisher(c.ctx, f"ipc://{tmp_path}/pub", "connector", c.epoch)
    c.bridge.start()
    try:
        steps: list[int] = []
        real = c.bridge._loop.step
        c.bridge._loop.step = lambda *a: steps.append(1) or real(*a)  # type: ignore[method-assign]
        c.on_tick(0.0)
        assert steps == []  # nothing there: an idle tick costs the broker loop nothing
        fut = c.bridge.submit(asyncio.sleep(0))
        c.on_tick(0.0)
        assert steps == [1] and fut.done()
    finally:
        c.pub.close()
        c.bridge.stop()


def test_the_orders_of_a_flight_leave_together_after_one_journal_commit(cfg, tmp_path):
    """The executor sends a batch's orders back to back, each saying how many go together (``flight``); those that
    arrive in one loop turn are held until the rest have too, so one journal fdatasync covers them all."""
    from services.connector.order_ops import FLIGHT_WAIT_S

    c = _connector(cfg)
    c.pub = bus.Publisher(c.ctx, f"ipc://{tmp_path}/pub", "connector", c.epoch)
    c.bridge.start()
    try:
        ran: list[str] = []

        def hold(cid: str, flight: int) -> None:  # as an order op does for an order to send (order_ops.py)
            c._in_flight_of(flight)
            c.bridge.defer(_order(ran, cid), lambda r: r, f"order {cid}", 30.0, hold=True)
            c.orders_log.add(json.dumps({"cid": cid, "status": "sent"}))

        commits = c.progress.get("journal_commits", 0)
        hold("a", 3)
        hold("b", 3)
        c._turn()
        assert ran == [] and c.bridge.held_count == 2 and c.progress.get("journal_commits", 0) == commits
        assert 0 <= c.poll_timeout_ms() <= FLIGHT_WAIT_S * 1000  # the loop wakes for the flight's deadline
        hold("c", 3)
        c._turn()
        assert ran == ["a", "b", "c"] and not c.bridge.has_held  # sent within the turn, after one commit
        assert c.progress["journal_commits"] == commits + 1
        assert c.poll_timeout_ms() == 100  # nothing waits

        hold("d", 2)  # its flight's other order never comes (its sender died): it leaves at the deadline
        c._turn()
        assert ran == ["a", "b", "c"]
        deadline = time.monotonic() + FLIGHT_WAIT_S
        while time.monotonic() < deadline:
            time.sleep(FLIGHT_WAIT_S / 2)
        c._turn()
        assert ran == ["a", "b", "c", "d"] and c.progress["journal_commits"] == commits + 2

        hold("e", 1)  # alone (a sender of old, or an attempt again): at once
        c._turn()
        assert ran[-1] == "e" and c.progress["journal_commits"] == commits + 3
    finally:
        c.pub.close()
        c.bridge.stop()
