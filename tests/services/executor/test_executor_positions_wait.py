"""While the gathered batch's positions are awaited (decision_desk.py `_prefetch_positions`), the SUB socket is read
too: the bar's signals arriving during the round trip are taken then, and the other messages read meanwhile are
handled after the answer, as they were when they were read after it (a close heard before an answer made before it
is not undone by that answer)."""

from __future__ import annotations

import threading
import time

import zmq
from harness import Home
from served_responder import Served, open_to_anyone

from common import bus, messages
from services.executor import risk as risk_rules
from services.executor.service import Executor

T0 = 1_764_950_400


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
    open_to_anyone(rep)
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


# A message read while the gathered batch's positions are awaited is handled after the answer (decision_desk.py
# `_prefetch_positions`, `_deferred`); when it sends an order (here an account update past the emergency drawdown:
# the executor halts and closes every position), the answer no longer stands for the account, and the batch's
# decisions ask the positions again. Real sockets: a concurrent Responder standing in for the connector (positions
# and order_close, served by a thread) and a publisher for the account update and the bar's signals.
def test_an_order_sent_by_a_message_read_during_the_positions_wait_has_the_positions_asked_again(tmp_path):
    home = Home(tmp_path)
    cfg = home.config()
    cfg.path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    ex = Executor(cfg)
    ex._next_hb = float("inf")  # no heartbeat to beat here
    ex.on_step("executor.load", {})
    ex.risk = risk_rules.start_session(10_000.0, 10_000.0)
    pub = bus.Publisher(ex.ctx, "inproc://wait", "connector", 1)
    ex.pub = bus.Publisher(ex.ctx, "inproc://acks", "executor", 1)
    ex.sub = bus.Subscriber(ex.ctx, ["inproc://wait"], ["signal.", messages.ACCOUNT_TOPIC], ex.errors)
    poller = ex._poller = zmq.Poller()
    poller.register(ex.sub.sock, zmq.POLLIN)
    while not poller.poll(100):  # the subscription reaches the publisher
        pub.publish("signal.PROBE", signal("PROBE"))
    ex.sub.drain()

    book = [messages.Position(ticket=1, symbol="EURUSD", direction=1, volume=0.01, open_price=1.1, open_time=1.0,
                              sl=None, tp=None, label="", comment="", used_margin=11.0, current_price=1.1, pnl=0.0)]
    closed: list[int] = []
    asked = [0]

    def positions(_args: object) -> messages.Positions:
        asked[0] += 1
        if asked[0] == 1:
            # the batch's request: the equity falls past the emergency drawdown while it is out, then the bar's
            # next signal; answered once the executor has taken the signal (the update read before it, kept)
            pub.publish(messages.ACCOUNT_TOPIC, messages.AccountUpdate(10_000.0, 8_000.0, 11.0, 7_989.0, "USD"))
            pub.publish("signal.GBPUSD", signal("GBPUSD"))
            until = time.monotonic() + 20
            while "GBPUSD" not in ex.pending and time.monotonic() < until:
                time.sleep(0.001)
        return messages.Positions(list(book), messages.AccountInfo(10_000.0, 8_000.0, 11.0, 7_989.0, 0.0, "USD",
                                                                   100.0))

    def close(a: messages.OrderCloseArgs) -> messages.OrderResult:
        closed.append(a.ticket)
        book[:] = [p for p in book if p.ticket != a.ticket]
        return messages.OrderResult(True, a.client_order_id, ticket=a.ticket, price=1.1)

    served = Served(open_to_anyone(bus.Responder(
        ex.ctx, cfg.endpoint("connector", "rep"),
        {messages.OP_POSITIONS.name: positions, messages.OP_ORDER_CLOSE.name: close},
        bus.WireErrors("connector"), concurrent=True)))
    try:
        ex.synced = True
        ex.timeframes.update(EURUSD="H1", GBPUSD="H1")
        ex._take_signal(signal("EURUSD"), 1, 1)  # the bar's first signal: its batch gathered, positions asked
        assert ex._prefetch_positions()
        assert sorted(ex.pending) == ["EURUSD", "GBPUSD"]  # taken during the round trip
        # the update, handled after the answer: the halt, the positions read again, the emergency close sent
        assert ex.risk.halted and closed == [1] and ex.progress["positions_requests"] == 2
        # that close changed the account the batch's answer described: not the batch's positions any more
        assert not ex._positions_fresh
    finally:
        served.stop()
        ex.on_stop()
        if ex._spool is not None:
            import os
            os.close(ex._spool)
        ex.ctx.destroy(linger=0)
        home.close()
