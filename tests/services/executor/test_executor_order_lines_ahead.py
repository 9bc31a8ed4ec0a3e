"""The executor's order lines (order_desk.py `_open_lines`) are opened at executor.load, one per enabled modelled
symbol, against a real concurrent Responder standing in for the connector (a ROUTER over ipc, served by a thread):
a flight takes them and opens none; a flight larger than the lines opened ahead opens the rest (counted) and they
stay; a line that timed out comes back reset and answers the next order."""

from __future__ import annotations

import concurrent.futures

import pytest
from harness import Home
from served_responder import Served, open_to_anyone

from common import bus, messages
from services.executor.order_answers import close_request
from services.executor.service import Executor


class Connector:
    """Answers order_close at once with a fill, except the client order ids in `silent` (never answered)."""

    def __init__(self, ex: Executor):
        self.silent: set[str] = set()
        self.asked: list[tuple[str, int]] = []  # (client order id, flight)
        self.served = Served(open_to_anyone(bus.Responder(
            ex.ctx, ex.cfg.endpoint("connector", "rep"), {messages.OP_ORDER_CLOSE.name: self._close},
            bus.WireErrors("connector"), concurrent=True)))

    def _close(self, a: messages.OrderCloseArgs):
        self.asked.append((a.client_order_id, a.flight))
        if a.client_order_id in self.silent:
            return bus.Deferred(concurrent.futures.Future(), lambda f: f.result())
        return messages.OrderResult(True, a.client_order_id, ticket=a.ticket, price=1.1)

    def stop(self) -> None:
        self.served.stop()


@pytest.fixture
def loaded(tmp_path):
    home = Home(tmp_path, {"executor": {"order_timeout_s": 1}})
    cfg = home.config()
    cfg.path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    ex = Executor(cfg)
    ex._next_hb = float("inf")  # no PUB socket here to beat on
    ex.on_step("executor.load", {})
    conn = Connector(ex)
    try:
        yield ex, conn
    finally:
        conn.stop()
        ex.on_stop()
        ex.ctx.destroy(linger=0)
        home.close()


def closes(*tickets: int) -> list:
    return [close_request(t, f"c{t}") for t in tickets]


def test_the_lines_are_opened_at_load_and_a_flight_opens_none(loaded):
    ex, conn = loaded
    assert ex.modelled == {"EURUSD"} and ex.config is not None and ex.config.symbol("EURUSD").enabled
    ahead = list(ex._order_lines)
    assert len(ahead) == 1 and ahead[0].sock is not None and ahead[0].pending is None  # connecting already
    results = ex._orders(closes(1))
    assert [(r.client_order_id, r.ticket) for r in results] == [("c1", 1)]
    assert ex._order_lines == ahead  # the same line, back in the pool
    assert "order_lines_opened_in_flight" not in ex.progress
    assert ex._open_lines(1) == 0  # a later call (a command's config change) opens none while enough are there


def test_more_orders_at_once_than_lines_opened_ahead_open_the_rest_and_keep_them(loaded):
    ex, conn = loaded
    ahead = list(ex._order_lines)
    results = ex._orders(closes(1, 2, 3))
    assert [r.ticket for r in results] == [1, 2, 3]
    assert sorted(conn.asked) == [("c1", 3), ("c2", 3), ("c3", 3)]
    assert ex.progress["order_lines_opened_in_flight"] == 2
    assert len(ex._order_lines) == 3 and ex._order_lines[0] is ahead[0]
    ex._orders(closes(4, 5, 6))  # the next as large takes the lines kept
    assert ex.progress["order_lines_opened_in_flight"] == 2


def test_lines_out_with_a_flight_count_as_opened(loaded):
    ex, conn = loaded
    ex._open_lines(3)
    assert len(ex._order_lines) == 3
    group = ex._group(closes(1, 2))  # out (not yet sent): two of the three lines
    ex._flight_lines[1] = group
    try:
        assert len(ex._order_lines) == 1
        assert ex._open_lines(3) == 0
        assert ex._open_lines(4) == 1 and len(ex._order_lines) == 2
    finally:
        del ex._flight_lines[1]
        ex._release(group)


def test_a_line_that_timed_out_comes_back_reset_and_answers_the_next_order(loaded):
    ex, conn = loaded
    line = ex._order_lines[0]
    sock = line.sock
    conn.silent.add("c1")
    results = ex._orders(closes(1))  # no answer by executor.order_timeout_s
    assert results[0].startswith("timeout")
    assert ex._order_lines == [line] and line.pending is None and line.sock is not sock and line.resets >= 1
    results = ex._orders(closes(2))
    assert [(r.client_order_id, r.ticket) for r in results] == [("c2", 2)]
    assert "order_lines_opened_in_flight" not in ex.progress
