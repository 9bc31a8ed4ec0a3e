"""Order requests in flight together: one REQ socket each, so the connector (a ROUTER serving orders concurrently)
has them all at once. Driven by the caller's loop (`pump`, never blocking), so the executor goes on deciding other
symbols' signals while these orders wait for their fills.

Each request is asked again with the same client order id until answered or the deadline has passed (the connector
answers the first result for an id it has seen, also after its own restart, and joins a repeat of an order still
out to it). A request lost with a connector that died is never answered: each attempt waits `attempt_s` at most,
and a connector just restarted (not connected yet) is asked again after `NOT_CONNECTED_RETRY_S`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import zmq

from common import bus, messages, wire

log = logging.getLogger("oracle.executor")

NOT_CONNECTED_RETRY_S = 0.2
Result = messages.OrderResult | str  # a string is the error


class OrderGroup:
    def __init__(self, lines: list[bus.Requester], requests: list[tuple[str, Any, str]], deadline: float,
                 attempt_s: float):
        assert len(lines) == len(requests)
        self.lines = lines
        # (op, args, client order id); each first attempt says how many go together (`OrderOpenArgs.flight`): the
        # connector makes them durable with one journal commit; an attempt again goes alone (flight 1)
        self.requests = requests
        self._first = [dataclasses.replace(args, flight=len(requests)) if len(requests) > 1 else args
                       for _op, args, _cid in requests]
        self.deadline = deadline
        self.attempt_s = attempt_s
        self.results: list[Result | None] = [None] * len(requests)
        self._errors = [""] * len(requests)
        self._send_at = [0.0] * len(requests)  # when to (re)send; inf: waiting for the reply
        for line in lines:
            if line.pending is not None:
                line.reset()

    @property
    def done(self) -> bool:
        return all(r is not None for r in self.results)

    def final(self) -> list[Result]:
        return [r if r is not None else "no answer" for r in self.results]

    def sockets(self) -> list[zmq.Socket]:
        """The sockets a reply is awaited on (to poll)."""
        return [line.sock for line, r in zip(self.lines, self.results, strict=True)
                if r is None and line.pending is not None and line.sock is not None]

    def next_due(self) -> float:
        """When `pump` next has something to do that no answer brings (time.monotonic): a request to send or to
        send again, an attempt's end, the group's deadline. The loop sleeps until then or an answer arrives."""
        due = self.deadline
        for i, r in enumerate(self.results):
            if r is None:
                pending = self.lines[i].pending
                due = min(due, self._send_at[i], pending[2] if pending is not None else due)
        return due

    def pump(self, now: float) -> bool:
        """Send what is due, take the replies that arrived; True once every request has its result."""
        if now >= self.deadline:
            for i, r in enumerate(self.results):
                if r is None:
                    self.results[i] = self._errors[i] or "timeout: no answer from the connector"
                    if self.lines[i].pending is not None:
                        self.lines[i].reset()
            return True
        for i, (op, args, _cid) in enumerate(self.requests):
            if self.results[i] is None and now >= self._send_at[i]:
                first, self._first[i] = self._first[i], args
                self.lines[i].send(op, first, int(min(self.deadline - now, self.attempt_s) * 1000))
                self._send_at[i] = float("inf")
        for i in range(len(self.requests)):
            if self.results[i] is None and self.lines[i].pending is not None:
                self._take(i, now)
        return self.done

    def _take(self, i: int, now: float) -> None:
        op, _args, cid = self.requests[i]
        line = self.lines[i]
        try:
            reply = line.take_reply()  # resets the socket at its deadline
        except bus.RequestTimeout as exc:
            self._errors[i] = f"timeout: {exc}"
            log.warning("order %s: %s; asking again with the same id", cid, self._errors[i])
            self._send_at[i] = now
            return
        except wire.WireError as exc:
            line.reset()
            self.results[i] = f"{exc}"
            return
        if reply is None:
            return
        if reply.ok:
            ok = isinstance(reply.result, messages.OrderResult)
            self.results[i] = reply.result if ok else f"{op}: not an order result: {reply.result!r}"
        elif reply.error_code == "not_connected":
            self._errors[i] = f"{op}: {reply.error_message}"
            self._send_at[i] = now + NOT_CONNECTED_RETRY_S
        else:
            self.results[i] = f"{op}: {reply.error_message}"
