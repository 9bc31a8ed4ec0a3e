"""The paper process in-process (no sockets): the signals drained are applied and committed in one batch once the
newest bar's are all there (or a while after the first), and only then do trades and metrics leave; a process
killed before the commit restarts from the previous one; a state file in the old one-file format is loaded and
migrated by paper.load."""

from __future__ import annotations

import json
import os
import random

import pytest
from harness import REPO, Home

from common import messages, wire
from common.bus import Received
from common.model_meta import read_models
from common.sequence import Delivery, Seen
from services.paper.account import new_book, replay
from services.paper.service import COMMIT_DELAY_MAX_S, Paper
from services.paper.store import read_book


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, object]] = []

    def publish(self, topic: str, body: object) -> int:
        self.sent.append((topic, body))
        return len(self.sent)

    def publish_many(self, items: list[tuple[str, object]]) -> None:
        for topic, body in items:
            self.publish(topic, body)

    def close(self) -> None:
        pass


def signals(n: int, start: int = 0, symbol: str = "EURUSD") -> list[messages.Signal]:
    rng = random.Random(5)
    price, out = 1.1, []
    for i in range(start + n):
        price *= 1 + rng.gauss(0, 0.002)
        direction = rng.choice((-1, 0, 1))
        intensity = rng.randint(1, 3) if direction else 0
        out.append(messages.Signal(symbol, 3600 * (i + 1), price, 0, direction, intensity, rng.randint(0, 2), 0.0))
    return out[start:]


def received(sig: messages.Signal, seq: int) -> Received:
    env = wire.Envelope(f"signal.{sig.symbol}", "Signal", "preditor", 1, seq, 0, sig)
    return Received(env, Seen(Delivery.IN_ORDER))  # (a first message would ask the preditor, absent here)


OPENED: list[Paper] = []


def new_paper(home: Home) -> Paper:
    svc = Paper(home.config())
    svc.pub = Recorder()  # type: ignore[assignment]
    OPENED.append(svc)
    return svc


def paper(home: Home, symbols: tuple[str, ...] = ("EURUSD",)) -> Paper:
    svc = new_paper(home)
    res = svc.on_step("paper.load", {})
    assert res["accounts"] == list(symbols)
    return svc


@pytest.fixture
def home(tmp_path):
    h = Home(tmp_path)
    yield h
    while OPENED:
        svc = OPENED.pop()
        if svc._spool is not None:
            os.close(svc._spool)
        for req in svc._preditors.values():
            req.close()
        svc.ctx.term()
    h.close()


def topics(svc: Paper) -> list[str]:
    return [t for t, _ in svc.pub.sent if not t.startswith("hb.")]  # type: ignore[union-attr]


def test_one_commit_per_batch_and_nothing_leaves_before_it(home):
    svc = paper(home)
    state = svc.store.path
    committed = state.read_bytes()
    batch = signals(40)
    svc._next_hb = 0.0  # a beat is due: the batch beats (runtime.beat_if_due) while it works
    for seq, sig in enumerate(batch, start=1):
        svc.on_message(received(sig, seq))
    assert topics(svc) == [] and svc.progress["signals_applied"] == 40
    assert any(t == "hb.paper" for t, _ in svc.pub.sent)  # type: ignore[union-attr]
    assert state.read_bytes() == committed and svc.pending_work() == 40
    svc.on_tick(0.0)
    assert svc.progress["saves"] == 1 and svc.pending_work() == 0
    sent = topics(svc)
    n_trades = len(svc.book.accounts["EURUSD"].trades)
    assert sent.count("paper.trade.EURUSD") == n_trades > 5
    assert sent[-1] == "paper.metrics.EURUSD" and sent.count("paper.metrics.EURUSD") == 1
    metrics = svc.pub.sent[-1][1]  # type: ignore[union-attr]
    assert metrics.trades == n_trades and metrics.balance == svc.book.accounts["EURUSD"].balance
    svc.on_tick(0.1)  # nothing new: no save
    assert svc.progress["saves"] == 1
    assert read_book(svc.state_path) == svc.book
    assert state.read_bytes().startswith(committed) and state.read_bytes().count(b"\n") == committed.count(b"\n") + 1


def test_killed_before_the_commit_restarts_from_the_last_one_and_a_replay_equals_a_straight_run(home):
    svc = paper(home)
    first, second = signals(25), signals(20, start=25)
    for seq, sig in enumerate(first, start=1):
        svc.on_message(received(sig, seq))
    svc.on_tick(0.0)
    committed = svc.book
    for seq, sig in enumerate(second, start=26):
        svc.on_message(received(sig, seq))
    # kill -9 here: the second batch was applied in memory, never committed, nothing of it left the process
    again = paper(home)
    assert again.book == committed and again.restored
    for seq, sig in enumerate(first + second, start=1):  # the stream again (or the preditor's last signals)
        again.on_message(received(sig, seq))
    again.on_tick(0.0)
    costs = {m.symbol: m.costs for m in read_models(home.config().path(home.config().preditor.models_dir))[0]}
    straight = replay(new_book(costs), [("EURUSD", s.direction, s.intensity, s.close, s.bar_time,
                                          s.hmm_state) for s in first + second])
    assert read_book(again.state_path).to_dict() == straight.to_dict()
    assert again.progress["signals_replayed"] == 25


def test_a_state_file_of_the_old_format_is_loaded_and_migrated(home):
    svc = paper(home)
    for seq, sig in enumerate(signals(30), start=1):
        svc.on_message(received(sig, seq))
    svc.on_tick(0.0)
    book = svc.book
    svc.state_path.write_text(json.dumps(book.to_dict()))  # as the version before the journal wrote it
    svc.store.path.unlink()
    again = new_paper(home)
    res = again.on_step("paper.load", {})
    assert res["restored"] and res["migrated"]
    assert again.book == book
    assert not again.state_path.exists() and again.store.path.exists()  # migrated into the log
    assert read_book(again.state_path) == book


@pytest.fixture
def home2(tmp_path):
    from system.preditor_rig import copy_model_as

    models = tmp_path / "two_models"
    models.mkdir()
    for symbol in ("EURUSD", "SYN01"):
        copy_model_as(REPO / "models" / "EURUSD_H1.zip", models, symbol)
    h = Home(tmp_path / "home", {"preditor": {"models_dir": str(models)}})
    yield h
    while OPENED:
        svc = OPENED.pop()
        if svc._spool is not None:
            os.close(svc._spool)
        svc.ctx.term()
    h.close()


def test_a_batch_waits_for_the_rest_of_its_bar_at_most_a_while(home2):
    svc = paper(home2, ("EURUSD", "SYN01"))
    euro, syn = signals(3), signals(3, symbol="SYN01")
    svc.on_message(received(euro[0], 1))
    first = svc._unsaved_since  # when the batch's first signal was applied: the clock of the wait
    svc.on_tick(first)
    assert "saves" not in svc.progress and svc.pending_work() == 1  # SYN01's signal of that bar is still to come
    assert 0 <= svc.poll_timeout_ms() <= COMMIT_DELAY_MAX_S * 1000  # the loop wakes up for the commit
    svc.on_message(received(syn[0], 2))
    svc.on_tick(first)
    assert svc.progress["saves"] == 1 and svc.pending_work() == 0  # the bar is whole: committed at once
    svc.on_message(received(euro[1], 3))  # SYN01's next one never comes
    first = svc._unsaved_since
    svc.on_tick(first)
    assert svc.progress["saves"] == 1
    svc.on_tick(first + COMMIT_DELAY_MAX_S + 0.001)  # but it is not waited for longer than this
    assert svc.progress["saves"] == 2 and svc.pending_work() == 0
    assert read_book(svc.state_path) == svc.book
    assert [t for t in topics(svc) if t.startswith("paper.metrics.")] == [
        "paper.metrics.EURUSD", "paper.metrics.SYN01", "paper.metrics.EURUSD"]


def test_a_whole_bar_ends_the_gathering_and_its_records_leave_in_the_commits_pass(home):
    """The drain that completes the newest bar ends the SUB's gathering (no wake at its end for nothing), and the
    commit's records go to persistence in the same loop pass (not in a pass of their own)."""
    from common import bus

    svc = paper(home)
    svc._store = bus.Requester(svc.ctx, svc.cfg.endpoint("persistence", "rep"), "paper", 2000)
    try:
        batch = signals(30)
        assert svc.gather_more()  # nothing applied: a burst's first part, gathered
        for seq, sig in enumerate(batch, start=1):
            svc.on_message(received(sig, seq))
        assert not svc.gather_more()  # every account (one) has the newest bar: the bar is whole
        assert len(svc.outbox) == 0 and svc._store.pending is None
        svc.on_tick(0.0)
        assert svc.progress["saves"] == 1 and len(svc.outbox) > 0
        assert svc._store.pending is not None and svc.outbox.inflight  # sent in this pass
        assert svc.progress["outbox_writes"] == 1
        assert svc.gather_more()  # committed: the next message starts another bar
    finally:
        svc._store.close()


def test_paper_reads_a_bars_signals_after_the_bars_moment():
    """Paper's signals wait, the first one too, until its gathering ends (runtime ``sub_gather_first``: tested in
    tests/common/test_runtime_gather.py), beyond the 6-16 ms in which the executor and the connector send the bar's
    orders."""
    assert Paper.sub_gather_first and Paper.sub_gather_ms >= 20


def test_a_commit_is_followed_by_a_heartbeat_saying_its_work_is_done(home):
    """A subscriber (the pipeline bench's settle wait, `oracle top`) sees paper's work of a bar done without asking:
    a commit with nothing to store beats at once (pending 0, no outbox); one with records does not (its records
    are not stored yet), the runtime beats when persistence has acknowledged them."""
    svc = paper(home)
    svc._store = None  # no persistence here: the records stay in the outbox
    svc._next_hb = float("inf")  # no periodic beat within the test
    flat = [messages.Signal("EURUSD", 3600 * (i + 1), 1.1, 0, 0, 0, 0, 0.0) for i in range(3)]  # no trade
    for seq, sig in enumerate(flat, start=1):
        svc.on_message(received(sig, seq))
    svc.outbox.pending.clear()  # what paper.load handed over (none here) is not this batch's
    svc.on_tick(0.0)
    beats = [b for t, b in svc.pub.sent if t == "hb.paper"]  # type: ignore[union-attr]
    assert svc.pub.sent[-1][0] == "hb.paper" and len(beats) == 1  # type: ignore[union-attr]
    assert beats[0].pending == 0 and "outbox" not in beats[0].info
    opening = messages.Signal("EURUSD", 3600 * 4, 1.1, 0, 1, 1, 0, 0.0)  # opens a position: a record
    svc.on_message(received(opening, 4))
    svc.on_tick(0.0)
    assert len(svc.outbox) == 1 and svc.pub.sent[-1][0] == "paper.metrics.EURUSD"  # type: ignore[union-attr]
    assert len([t for t, _ in svc.pub.sent if t == "hb.paper"]) == 1  # type: ignore[union-attr]


def test_a_commits_records_are_not_spooled_and_a_kill_after_it_loses_none(home):
    """A commit hands its trade records to the outbox in memory only (no spool write): a process killed -9 after
    the commit, before persistence acknowledged them, loses none, as the next process's paper.load hands every
    record of the committed book to persistence again (the same ids)."""
    svc = paper(home)
    svc._store = None  # no persistence here: nothing is acknowledged
    svc.outbox.pending.clear()  # what paper.load handed over
    for seq, sig in enumerate(signals(40), start=1):
        svc.on_message(received(sig, seq))
    svc.on_tick(0.0)
    handed = dict(svc.outbox.pending)
    assert len(handed) > 10 and svc.progress["trades"] > 5
    spool = svc._spool_path()
    assert not spool.exists() or b'"OPEN"' not in spool.read_bytes() and b'"CLOSE"' not in spool.read_bytes()
    again = paper(home)  # kill -9 here: the next process
    assert set(handed) <= set(again.outbox.pending)
    assert all(again.outbox.pending[rid] == handed[rid] for rid in handed)
