"""The write ops of one loop turn: committed together in one transaction, each answered only after the commit,
with its own acks and reasons (the service object in this process, its real store; no sockets)."""

from __future__ import annotations

import time

import pytest
from harness import Home
from pers_helpers import event_record, trade_record

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
    first = service._op_write(messages.WriteArgs({"trades": [a, b]}))
    bad = {**trade_record(3), "direction": 7}
    second = service._op_write(messages.WriteArgs({"trades": [{**a, "comment": "another writer"}, bad,
                                                               {**b, "session_id": ""}]}))
    only_bad = service._op_write(messages.WriteArgs({"trades": [bad]}))
    third = service._op_write(messages.WriteArgs({"trades": [trade_record(4)]}))
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
    ops = [service._op_write(messages.WriteArgs({"trades": [trade_record(i)]})) for i in range(3)]
    service.on_tick(time.monotonic())
    assert [len(answer(d).acked) for d in ops] == [1, 1, 1]
    assert service.progress["writes_committed_together"] == 3
    assert service.poll_timeout_ms() == 0 or not service.rep  # the answers go out on the next turn at once


def test_a_query_or_a_step_writes_what_was_sent_before_it(service):
    t = trade_record(1, session_id="")
    pending = service._op_write(messages.WriteArgs({"trades": [t]}))
    found = service._op_query(messages.QueryArgs("trades", {}, 10))
    assert [r["id"] for r in found.records] == [t["id"]] and answer(pending).acked == [t["id"]]


def test_a_stop_before_the_commit_answers_retry(service):
    pending = service._op_write(messages.WriteArgs({"trades": [trade_record(1)]}))
    pending.future.cancel()  # what Responder.abandon does when the process stops
    with pytest.raises(bus.OpError, match="send the records again"):
        answer(pending)


def test_one_request_carries_several_tables_committed_together_each_record_judged_alone(service):
    """A write's tables (the executor's signals and acks of a bar) are one transaction; an unknown table's records
    and a bad record are rejected by id, the others acked in the order sent."""
    trades = [trade_record(i) for i in range(3)]
    events = [event_record(i) for i in range(2)]
    bad = {**trade_record(9), "direction": 7}
    stray = {"id": "stray-1", "x": 1}
    pending = service._op_write(messages.WriteArgs({"trades": [trades[0], bad, trades[1]], "events": events,
                                                    "nonsense": [stray], "trades ": []}))
    assert isinstance(pending, bus.Deferred) and not pending.future.done()
    assert service.recorder.store.count("trades") == 0  # nothing before the commit
    service.on_tick(time.monotonic())
    got = answer(pending)
    assert got.acked == [trades[0]["id"], trades[1]["id"], *(e["id"] for e in events)]
    assert set(got.rejected) == {bad["id"], "stray-1"} and "unknown table" in got.rejected["stray-1"]
    assert service.recorder.store.count("trades") == 2 and service.recorder.store.count("events") == 2
    assert "writes_committed_together" not in service.progress  # one request, one transaction


@pytest.mark.parametrize(("tables", "why"), [
    ([["trades", []]], "must be a map"),
    ({"trades": {"id": "x"}}, "must be a list"),
    ({7: []}, "table name must be a text"),
    ({"t" * 65: []}, "table name must be a text"),
    ({"trades": [{"id": str(i)} for i in range(600)], "events": [{"id": str(i)} for i in range(401)]},
     "at most 1000 records"),
])
def test_a_malformed_write_is_refused_whole_with_a_clear_error(service, tables, why):
    events = [event_record(0)]
    with pytest.raises(bus.OpError, match=why) as err:
        service._op_write(messages.WriteArgs(tables if not isinstance(tables, dict) else {"events": events, **tables}))
    assert err.value.code == "bad_args"
    service.on_tick(time.monotonic())
    assert service.recorder.store.count("events") == 0  # nothing of it written, not even its good part


def test_a_store_error_acks_no_table_of_the_request(service):
    """All or nothing per request: the store refusing the transaction is the whole request's error reply (its
    sender keeps every record and retries), then a retry stores them all."""
    import sqlite3

    trades, events = [trade_record(1)], [event_record(1)]
    service.recorder.store._conn.execute("PRAGMA busy_timeout=0")
    service._alerted_at["store_busy"] = time.monotonic()  # alerted just now (no PUB socket in this rig)
    locker = sqlite3.connect(service.db_path, timeout=0, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        pending = service._op_write(messages.WriteArgs({"trades": trades, "events": events}))
        service.on_tick(time.monotonic())
        with pytest.raises(bus.OpError) as err:
            answer(pending)
        assert err.value.code == "store_busy"
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert service.recorder.store.count("trades") == 0 and service.recorder.store.count("events") == 0
    retry = service._op_write(messages.WriteArgs({"trades": trades, "events": events}))
    service.on_tick(time.monotonic())
    assert answer(retry).acked == [trades[0]["id"], events[0]["id"]]
