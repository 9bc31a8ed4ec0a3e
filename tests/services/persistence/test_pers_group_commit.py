"""The write ops of one loop turn: committed together in one transaction, each answered only after the commit,
with its own acks and reasons (the service object in this process, its real store; no sockets)."""

from __future__ import annotations

import time

import pytest
from harness import Home
from pers_helpers import trade_record

from common import bus, messages
from services.persistence.service import Persistence


@pytest.fixture
def service(tmp_path):
    home = Home(tmp_path)
    svc = Persistence(home.config())
    svc._open()
    yield svc
    svc.on_stop()
    svc.ctx.term()
    home.close()


def answer(d: bus.Deferred) -> messages.WriteResult:
    assert d.future.done()
    return d.finish(d.future)


def test_write_ops_of_a_turn_are_one_commit_each_answered_after_it(service):
    a, b = trade_record(1, session_id=""), trade_record(2, is_paper=True)
    first = service._op_write(messages.WriteArgs("trades", [a, b]))
    bad = {**trade_record(3), "direction": 7}
    second = service._op_write(messages.WriteArgs("trades", [{**a, "comment": "another writer"}, bad,
                                                             {**b, "session_id": ""}]))
    only_bad = service._op_write(messages.WriteArgs("trades", [bad]))
    third = service._op_write(messages.WriteArgs("trades", [trade_record(4)]))
    assert isinstance(first, bus.Deferred) and isinstance(second, bus.Deferred)
    assert isinstance(only_bad, messages.WriteResult) and "trades.direction" in only_bad.rejected[bad["id"]]
    assert not first.future.done() and not second.future.done()  # nothing is acknowledged before its commit
    assert service.recorder.store.count("trades") == 0
    service.on_tick(time.monotonic())
    assert answer(first) == messages.WriteResult([a["id"], b["id"]], {})
    got = answer(second)
    assert got.acked == [b["id"]]  # its copy of b gets b's stored session: a duplicate
    assert set(got.rejected) == {a["id"], bad["id"]}
    assert "conflict" in got.rejected[a["id"]] and "comment" in got.rejected[a["id"]]
    assert "trades.direction" in got.rejected[bad["id"]]
    assert len(answer(third).acked) == 1
    assert service.recorder.store.count("trades") == 3
    assert service.progress["writes_committed_together"] == 2  # the first and the third; the second after them


def test_ops_with_distinct_ids_are_one_transaction(service):
    ops = [service._op_write(messages.WriteArgs("trades", [trade_record(i)])) for i in range(3)]
    service.on_tick(time.monotonic())
    assert [len(answer(d).acked) for d in ops] == [1, 1, 1]
    assert service.progress["writes_committed_together"] == 3
    assert service.poll_timeout_ms() == 0 or not service.rep  # the answers go out on the next turn at once


def test_a_query_or_a_step_writes_what_was_sent_before_it(service):
    t = trade_record(1, session_id="")
    pending = service._op_write(messages.WriteArgs("trades", [t]))
    found = service._op_query(messages.QueryArgs("trades", {}, 10))
    assert [r["id"] for r in found.records] == [t["id"]] and answer(pending).acked == [t["id"]]


def test_a_stop_before_the_commit_answers_retry(service):
    pending = service._op_write(messages.WriteArgs("trades", [trade_record(1)]))
    pending.future.cancel()  # what Responder.abandon does when the process stops
    with pytest.raises(bus.OpError, match="send the records again"):
        answer(pending)
