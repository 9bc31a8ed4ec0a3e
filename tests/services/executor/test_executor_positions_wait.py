"""While the gathered batch's positions are awaited (decision_desk.py `_prefetch_positions`), the SUB socket is read
too: the bar's signals arriving during the round trip are taken then, and the other messages read meanwhile are
handled after the answer, as they were when they were read after it (a close heard before an answer made before it
is not undone by that answer)."""

from __future__ import annotations

import threading
import time

import zmq
from harness import Home

from common import bus, messages
from services.executor.service import Executor

T0 = 1_764_950_400


class _Anyone:
    def __contains__(self, _role: object) -> bool:
        return True


def signal(symbol: str) -> messages.Signal:
    return messages.Signal(symbol, T0, 1.1, 1, 1, 1, 0, 0.0, previous_direction=1)


def test_signals_heard_while_the_positions_are_awaited_are_taken_and_other_messages_handled_after_them(tmp_path):
    home = Home(tmp_path)
    cfg = home.config()
    ex = Executor(cfg)
    pub = bus.Publisher(ex.ctx, "inproc://wait", "preditor", 1)
    ex.sub = bus.Subscriber(ex.ctx, ["inproc://wait"], ["signal.", "closed."], ex.errors)
    poller = ex._poller = zmq.Poller()
    poller.register(ex.sub.sock, zmq.POLLIN)
    while not poller.poll(100):  # the subscription reaches the publisher
        pub.publish("signal.PROBE", signal("PROBE"))
    ex.sub.drain()
    taken_before_answer: list[bool] = []
    book = messages.Position(ticket=1, symbol="EURUSD", direction=1, volume=0.01, open_price=1.1, open_time=1.0,
                             sl=None, tp=None, label="", comment="", used_margin=11.0, current_price=1.1, pnl=0.0)
    account = messages.AccountInfo(10_000.0, 10_000.0, 11.0, 9_989.0, 0.0, "USD", 100.0)

    def positions(_args: object) -> messages.Positions:
        # the bar's next signal and the close of EURUSD's position, published while the executor waits; the answer
        # (the book as it was when asked: the position still in it) only once the executor has taken the signal
        pub.publish("signal.GBPUSD", signal("GBPUSD"))
        pub.publish("closed.EURUSD", messages.PositionClosed(1, "EURUSD", 1, 0.01, 1.1, 1.1, 0.0, 0.0, 0.0, 0.0,
                                                             2.0, "SL_TP", False))
        until = time.monotonic() + 20
        while "GBPUSD" not in ex.pending and time.monotonic() < until:
            time.sleep(0.001)
        taken_before_answer.append("GBPUSD" in ex.pending)
        return messages.Positions([book], account)

    server_ctx = zmq.Context()
    cfg.path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    rep = bus.Responder(server_ctx, cfg.endpoint("connector", "rep"), {messages.OP_POSITIONS.name: positions},
                        bus.WireErrors("connector"))
    rep.permits = dict.fromkeys(rep.permits, _Anyone())
    rep.self_ops = frozenset()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            if rep.sock.poll(20):
                rep.serve_ready()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        ex.synced = True
        ex._next_hb = float("inf")  # no PUB socket here to beat on
        ex.timeframes.update(EURUSD="H1", GBPUSD="H1")
        ex._take_signal(signal("EURUSD"), 1, 1)  # the bar's first signal: its batch gathered, positions asked
        assert ex._prefetch_positions()
        assert taken_before_answer == [True]  # taken during the round trip
        assert sorted(ex.pending) == ["EURUSD", "GBPUSD"]
        assert ex._positions_fresh and ex._deferred is None
        assert ex.positions == []  # the close, read before the answer, handled after it
        assert ex.progress.get("closes_seen") == 1
    finally:
        stop.set()
        server.join()
        rep.sock.close(0)
        server_ctx.term()
        pub.sock.close(0)
        ex.sub.sock.close(0)
        if ex._spool is not None:
            import os
            os.close(ex._spool)
        for req in (ex._connector,):
            if req is not None:
                req.close()
        ex.ctx.term()
        home.close()
