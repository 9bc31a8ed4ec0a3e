"""Order requests in flight together (services/executor/order_lines.py) against a real concurrent Responder (a
ROUTER over ipc, served by a thread like the connector's loop): overlap, the same id asked again after a lost
answer, a connector not connected yet, and the deadline."""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from collections import Counter

import pytest
import zmq
from served_responder import Served

from common import bus, messages
from services.executor.order_lines import OrderGroup


class Connector:
    """A stand-in answering order_open with a Deferred the test completes (or a rule per attempt)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, answer):
        self.asked: Counter[str] = Counter()
        self.flights: list[tuple[str, int]] = []  # (client order id, the flight its request said), as they came
        self.futures: dict[str, concurrent.futures.Future] = {}
        self._answer = answer
        self.server = bus.Responder(ctx, endpoint, {"order_open": self._open}, bus.WireErrors("t"), concurrent=True)
        self.served = Served(self.server)

    def _open(self, a: messages.OrderOpenArgs):
        self.asked[a.client_order_id] += 1
        self.flights.append((a.client_order_id, a.flight))
        return self._answer(self, a)

    def stop(self) -> None:
        self.served.stop()


def filled(cid: str, ticket: int) -> messages.OrderResult:
    return messages.OrderResult(True, cid, ticket=ticket, price=1.1)


def requests(*cids: str) -> list[tuple[str, messages.OrderOpenArgs, str]]:
    return [("order_open", messages.OrderOpenArgs("EURUSD", 1, 0.1, cid), cid) for cid in cids]


def drive(group: OrderGroup, timeout_s: float = 10.0) -> list:
    end = time.monotonic() + timeout_s
    while not group.pump(time.monotonic()):
        assert time.monotonic() < end, "the group never finished"
        time.sleep(0.002)
    return group.final()


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.term()


@contextlib.contextmanager
def serving(ctx, tmp_path, answer, n: int):
    """The stand-in connector answering with `answer`, and `n` REQ lines to it (closed after)."""
    endpoint = f"ipc://{tmp_path}/conn"
    conn = Connector(ctx, endpoint, answer)
    lines = [bus.Requester(ctx, endpoint, "executor") for _ in range(n)]
    try:
        yield conn, lines
    finally:
        conn.stop()
        for line in lines:
            line.close()


def test_orders_are_out_together_and_each_gets_its_own_answer(ctx, tmp_path):
    def later(conn: Connector, a):
        conn.futures[a.client_order_id] = fut = concurrent.futures.Future()
        return bus.Deferred(fut, lambda f: f.result())

    with serving(ctx, tmp_path, later, 3) as (conn, ls):
        group = OrderGroup(ls, requests("a", "b", "c"), time.monotonic() + 10, attempt_s=5)
        end = time.monotonic() + 5
        while len(conn.futures) < 3:  # all three reach the connector before any is answered
            group.pump(time.monotonic())
            assert time.monotonic() < end
            time.sleep(0.002)
        for ticket, cid in enumerate(("c", "a", "b"), 1):  # answered in another order
            conn.futures[cid].set_result(filled(cid, ticket))
        got = drive(group)
        assert [(r.client_order_id, r.ticket) for r in got] == [("a", 2), ("b", 3), ("c", 1)]
        assert conn.asked == {"a": 1, "b": 1, "c": 1}
        assert sorted(conn.flights) == [("a", 3), ("b", 3), ("c", 3)]  # each says how many go together


def test_a_lost_answer_is_asked_again_with_the_same_id_and_not_connected_is_retried(ctx, tmp_path):
    def flaky(conn: Connector, a):
        n = conn.asked[a.client_order_id]
        if a.client_order_id == "lost" and n == 1:
            return bus.Deferred(concurrent.futures.Future(), lambda f: f.result())  # never answered
        if a.client_order_id == "early" and n == 1:
            raise bus.OpError("not_connected", "the broker is not connected (connecting)")
        return filled(a.client_order_id, 7 if a.client_order_id == "lost" else 8)

    with serving(ctx, tmp_path, flaky, 2) as (conn, ls):
        got = drive(OrderGroup(ls, requests("lost", "early"), time.monotonic() + 10, attempt_s=0.3))
        assert [(r.success, r.ticket) for r in got] == [(True, 7), (True, 8)]
        assert conn.asked == {"lost": 2, "early": 2}
        assert sorted(conn.flights) == [("early", 1), ("early", 2), ("lost", 1), ("lost", 2)]  # again: alone


def test_no_answer_by_the_deadline_is_an_error_naming_the_timeout_and_a_refusal_is_final(ctx, tmp_path):
    def answer(conn: Connector, a):
        if a.client_order_id == "refused":
            raise bus.OpError("bad_args", "lots must be positive")
        return bus.Deferred(concurrent.futures.Future(), lambda f: f.result())

    with serving(ctx, tmp_path, answer, 2) as (conn, ls):
        got = drive(OrderGroup(ls, requests("silent", "refused"), time.monotonic() + 0.8, attempt_s=0.3))
        assert got[0].startswith("timeout") and "no reply" in got[0]
        assert got[1] == "order_open: lots must be positive"
        assert conn.asked["refused"] == 1 and conn.asked["silent"] >= 2  # asked again until the deadline


def test_the_group_says_when_it_has_something_to_do_that_no_answer_brings(ctx, tmp_path):
    def never(conn: Connector, a):
        return bus.Deferred(concurrent.futures.Future(), lambda f: f.result())

    with serving(ctx, tmp_path, never, 2) as (conn, ls):
        deadline = time.monotonic() + 10
        group = OrderGroup(ls, requests("a", "b"), deadline, attempt_s=0.5)
        assert group.next_due() == 0.0  # nothing sent yet: due now
        group.pump(time.monotonic())
        ends = [line.pending[2] for line in ls if line.pending is not None]
        assert len(ends) == 2 and group.next_due() == min(ends) < deadline  # the first attempt's end
