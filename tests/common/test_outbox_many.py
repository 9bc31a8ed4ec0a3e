"""``persist_many`` (a run's records: one spool write) keeps what ``persist`` keeps, record for record: the same
spool lines, in the OS before it returns (a new process restores them), a record already kept not twice."""

from __future__ import annotations

import json

import pytest
from harness import Home

from common import runtime


class Keeping(runtime.Service):
    name = "executor"


@pytest.fixture
def cfg(tmp_path):
    home = Home(tmp_path)
    yield home.config()
    home.close()


def made(cfg):
    svc = Keeping(cfg)
    svc.ctx.term()
    return svc


def spool(cfg) -> list[dict]:
    path = cfg.path(cfg.data_dir) / "outbox" / "executor.jsonl"
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_records_spooled_together_are_those_spooled_one_by_one_and_survive_the_process(cfg):
    records = [{"id": f"s{i}", "bar_time": i, "data": {"close": 1.0 + i / 8}} for i in range(5)]
    one = made(cfg)
    for r in records[:2]:
        one.persist("signals", r)
    one.persist_many("signals", records)  # the first two are kept already: not spooled again
    assert spool(cfg) == [{"table": "signals", "record": r} for r in records]
    assert list(one.outbox.pending) == [r["id"] for r in records]
    again = made(cfg)  # a kill -9 after the write: the next process restores every record
    again._restore_outbox()
    assert [(table, r) for table, r in again.outbox.pending.values()] == [("signals", r) for r in records]


def test_the_last_sends_at_stop_wait_for_persistence_without_spinning(tmp_path):
    """No persistence answers: the flush at stop asks, waits for the answer's timeout, then for the retry time,
    sleeping (it spun through the second before each retry: a core busy at every stop without persistence)."""
    home = Home(tmp_path, {"runtime": {"request_timeout_ms": 200, "stop_timeout_s": 3.0}})
    try:
        svc = Keeping(home.config())
        svc.persist("signals", {"id": "s1", "bar_time": 1, "data": {}})
        svc._flush_outbox()  # 1.5 s: a send, its timeout (4 polls of 50 ms), the retry a second later, ...
        assert len(svc.outbox) == 1  # kept for the next start
        assert svc.progress["outbox_flush_turns"] < 60, svc.progress
        assert svc.progress["outbox_writes"] >= 2  # asked again after the retry time
        svc._store.close()
        svc.ctx.term()
    finally:
        home.close()


def test_the_heartbeat_goes_in_the_pass_where_persistence_acknowledged_the_last_record(tmp_path):
    """When the outbox empties, the heartbeat says so at once (its `info.outbox` gone): `oracle top`'s backlog,
    and the pipeline bench's settle wait, which reads it instead of asking the services' status."""
    import zmq

    from common import bus, messages

    home = Home(tmp_path)
    ctx = zmq.Context.instance()
    cfg = home.config()
    cfg.path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    store = bus.Responder(ctx, cfg.endpoint("persistence", "rep"), {
        "write": lambda a: messages.WriteResult([r["id"] for rs in a.tables.values() for r in rs])},
        bus.WireErrors("t"))
    try:
        svc = Keeping(cfg)
        svc.outbox.max_batch = 1
        for i in range(2):
            svc.persist("signals", {"id": f"s{i}", "bar_time": i, "data": {}})
        later = 1e9  # past the batch's gathering
        for left in (1, 0):
            svc._next_hb = float("inf")
            svc._drive_outbox(later)  # sends one record
            assert store.sock.poll(10_000) and store.serve_ready() == 1
            assert svc._store.sock.poll(10_000)
            svc._drive_outbox(later)  # its acknowledgement
            assert len(svc.outbox) == left
            assert (svc._next_hb == 0.0) == (left == 0)  # a beat is due at once only when it emptied
        svc._store.close()
        svc.ctx.term()
    finally:
        store.sock.close(0)
        home.close()


def test_every_tables_records_leave_in_one_request_and_the_rest_in_the_pass_that_takes_the_reply(cfg):
    """One write request holds the waiting records of every table (a bar's signals and acks together); records past
    ``max_batch`` leave in the loop pass that takes the first one's reply (not in a pass of their own after it)."""
    import zmq

    from common import bus, messages

    writes: list[dict[str, list[str]]] = []

    def write(args: messages.WriteArgs) -> messages.WriteResult:
        writes.append({table: [r["id"] for r in records] for table, records in args.tables.items()})
        return messages.WriteResult([r["id"] for records in args.tables.values() for r in records])

    cfg.path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    ctx = zmq.Context()
    store = bus.Responder(ctx, cfg.endpoint("persistence", "rep"), {"write": write}, bus.WireErrors("t"))
    svc = Keeping(cfg)
    try:
        svc.outbox.max_batch = 3
        svc.persist("signals", {"id": "s1", "data": {}})
        svc.persist("acks", {"id": "a1", "data": {}})
        svc.persist("signals", {"id": "s2", "data": {}})
        svc.persist("acks", {"id": "a2", "data": {}})
        svc._drive_outbox(1e9)  # quiet long since: the oldest three leave, both tables in one request
        assert store.sock.poll(5000) and store.serve_ready() == 1
        assert writes == [{"signals": ["s1", "s2"], "acks": ["a1"]}]
        assert svc._store is not None and svc._store.sock.poll(5000)
        svc._drive_outbox(1e9)  # one pass: the reply taken, and the rest sent
        assert svc._store.pending is not None, "the rest waits for a pass of its own"
        assert store.sock.poll(5000) and store.serve_ready() == 1
        assert writes[1:] == [{"acks": ["a2"]}]
    finally:
        if svc._store is not None:
            svc._store.close()
        store.sock.close(0)
        svc.ctx.term()
        ctx.term()
