"""The paper process in-process (no sockets): a loop pass applies every signal it drained, commits the book once,
and only then lets trades and metrics out; a process killed before the commit restarts from the previous one; a
state file in the old one-file format is loaded and migrated by paper.load."""

from __future__ import annotations

import json
import os
import random

import pytest
from harness import Home

from common import messages, wire
from common.bus import Received
from common.model_meta import read_models
from common.sequence import Delivery, Seen
from services.paper.account import new_book, replay
from services.paper.service import Paper
from services.paper.store import journal_path, read_book


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, object]] = []

    def publish(self, topic: str, body: object) -> int:
        self.sent.append((topic, body))
        return len(self.sent)

    def close(self) -> None:
        pass


def signals(n: int, start: int = 0) -> list[messages.Signal]:
    rng = random.Random(5)
    price, out = 1.1, []
    for i in range(start + n):
        price *= 1 + rng.gauss(0, 0.002)
        direction = rng.choice((-1, 0, 1))
        intensity = rng.randint(1, 3) if direction else 0
        out.append(messages.Signal("EURUSD", 3600 * (i + 1), price, 0, direction, intensity, rng.randint(0, 2), 0.0))
    return out[start:]


def received(sig: messages.Signal, seq: int) -> Received:
    env = wire.Envelope("signal.EURUSD", "Signal", "preditor", 1, seq, 0, sig)
    return Received(env, Seen(Delivery.IN_ORDER))  # (a first message would ask the preditor, absent here)


OPENED: list[Paper] = []


def new_paper(home: Home) -> Paper:
    svc = Paper(home.config())
    svc.pub = Recorder()  # type: ignore[assignment]
    OPENED.append(svc)
    return svc


def paper(home: Home) -> Paper:
    svc = new_paper(home)
    res = svc.on_step("paper.load", {})
    assert res["accounts"] == ["EURUSD"]
    return svc


@pytest.fixture
def home(tmp_path):
    h = Home(tmp_path)
    yield h
    while OPENED:
        svc = OPENED.pop()
        if svc._spool is not None:
            os.close(svc._spool)
        if svc._preditor is not None:
            svc._preditor.close()
        svc.ctx.term()
    h.close()


def topics(svc: Paper) -> list[str]:
    return [t for t, _ in svc.pub.sent if not t.startswith("hb.")]  # type: ignore[union-attr]


def test_one_commit_per_pass_and_nothing_leaves_before_it(home):
    svc = paper(home)
    state = svc.state_path
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
    assert read_book(state) == svc.book


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
    svc.state_path.write_text(json.dumps(book.to_dict()))  # as the previous version wrote it
    journal_path(svc.state_path).unlink()
    again = new_paper(home)
    res = again.on_step("paper.load", {})
    assert res["restored"] and res["migrated"]
    assert again.book == book
    assert json.loads(again.state_path.read_text())["version"] == 2
    assert read_book(again.state_path) == book
