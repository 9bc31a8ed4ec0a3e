"""The signals read from the SUB socket in one pass are spooled for persistence with one write, before the pass
returns (the turn's decisions come after it): a process killed then has them all in its spool, and the next one
hands them to persistence (a kill before that write is a kill before they were read: the preditor's
`last_signals` gives them again)."""

from __future__ import annotations

import json

import zmq
from harness import Home

from common import bus, messages, outbox_sender
from services.executor import inputs
from services.executor.service import Executor

T0 = 1_764_950_400


def signal(symbol: str) -> messages.Signal:
    return messages.Signal(symbol, T0, 1.1, 1, 1, 1, 0, 0.0, previous_direction=1)


def wired(ex: Executor, endpoint: str, topics: list[str]) -> tuple[bus.Publisher, zmq.Poller]:
    """A preditor's PUB on an inproc endpoint and the executor's SUB on it, the subscription through."""
    pub = bus.Publisher(ex.ctx, endpoint, "preditor", 1)
    ex.sub = bus.Subscriber(ex.ctx, [endpoint], topics, ex.errors)
    poller = zmq.Poller()
    poller.register(ex.sub.sock, zmq.POLLIN)
    while not poller.poll(100):  # the subscription reaches the publisher
        pub.publish("signal.PROBE", signal("PROBE"))
    ex.sub.drain()
    return pub, poller


def test_the_signals_of_one_read_are_spooled_with_one_write_before_it_returns(tmp_path, monkeypatch):
    home = Home(tmp_path)
    cfg = home.config()
    ex = Executor(cfg)
    pub, poller = wired(ex, "inproc://signals", ["signal."])
    try:
        symbols = ["EURUSD", "GBPUSD", "USDJPY"]
        pub.publish_many([(f"signal.{s}", signal(s)) for s in symbols])  # inproc: in the pipe once sent
        writes: list[int] = []
        write = outbox_sender.os.write

        def counted(fd: int, data: bytes) -> int:
            writes.append(fd)
            return write(fd, data)

        monkeypatch.setattr(outbox_sender.os, "write", counted)
        ex._read_sub(poller, now=100.0)
        monkeypatch.undo()
        assert sorted(ex.pending) == symbols
        assert len(writes) == 1  # one write for the three (one each before)
        spooled = [json.loads(line) for line in ex._spool_path().read_bytes().splitlines()]
        assert [(e["table"], e["record"]["id"]) for e in spooled] == [
            ("signals", inputs.signal_id(signal(s))) for s in symbols]
        again = Executor(cfg)  # a kill -9 now: the next process hands them to persistence
        again._restore_outbox()
        assert [(t, r["symbol"]) for t, r in again.outbox.pending.values()] == [("signals", s) for s in symbols]
        again.ctx.term()
    finally:
        pub.sock.close(0)
        ex.sub.close()
        if ex._spool is not None:
            import os
            os.close(ex._spool)
        ex.ctx.term()
        home.close()


def test_signals_read_before_another_message_are_spooled_before_it_acts(tmp_path):
    """Another message of the same read (an account update may halt and wait for the emergency's closes) finds the
    signals read before it in the spool already."""
    spooled_then: list[list[str]] = []

    class Watched(Executor):
        def _on_market(self, ev: messages.MarketState) -> None:  # what the spool holds when the message acts
            path = self._spool_path()
            lines = path.read_bytes().splitlines() if path.exists() else []
            spooled_then.append([json.loads(line)["record"]["symbol"] for line in lines])
            super()._on_market(ev)

    home = Home(tmp_path)
    ex = Watched(home.config())
    pub, poller = wired(ex, "inproc://mixed", ["signal.", "market."])
    try:
        pub.publish_many([("signal.EURUSD", signal("EURUSD")),
                          ("market.EURUSD", messages.MarketState("EURUSD", True, 1.0, "test")),
                          ("signal.GBPUSD", signal("GBPUSD"))])
        ex._read_sub(poller, now=100.0)
        assert spooled_then == [["EURUSD"]]
        spooled = [json.loads(line)["record"]["symbol"] for line in ex._spool_path().read_bytes().splitlines()]
        assert spooled == ["EURUSD", "GBPUSD"]
    finally:
        pub.sock.close(0)
        ex.sub.sock.close(0)
        if ex._spool is not None:
            import os
            os.close(ex._spool)
        ex.ctx.term()
        home.close()
