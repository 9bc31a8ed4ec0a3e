"""The connector's order operations (shell, part of service.py's `Connector`): `order_open`, `order_close` and
`order_amend`, each checked, decided by the order ledger (ledger.py) and sent to the broker without waiting.

The ledger's decision is carried out here: an order out now is joined, one done answered from the journal, one sent
before without a known outcome looked up at the broker (its positions, then its deals), else it is sent and its
reply deferred until the broker answers (`_defer`); the outcome is journaled when it settles.

What is durable before what (group commit, `Connector._commit`: one write and one fdatasync per file per batch):
- an order's ``sent`` line before the order leaves: the orders asked in one turn of the loop are held
  (`_defer`, `Bridge.defer(hold=True)`), their lines committed together, then they all leave (`Connector._turn`);
- an outcome's ``done`` line, and the position an opening opened (the state), before its answer is given: the
  answers the broker gave since the last turn are settled together, committed once, then given (`Connector._turn`,
  with the orders and events of the same turn);
- an outcome found at the broker (a look-up) is committed at once: it is answered at once.

It lives on the `Connector` (a base class of it): it uses its ledger, journal, published state, broker and
bridge (`_need_broker`, `_check_symbol`, `_defer`, `_wait`, `_journal`, `_commit`, `count`).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from common import bus, messages, trace
from services.connector import journal, ledger, orders
from services.connector.bridge import Bridge
from services.connector.port import BrokerPort, OrderResult
from services.connector.state import ConnectorState

log = logging.getLogger("oracle.connector")


# The longest the first order of a flight (the orders a sender sent together: `OrderOpenArgs.flight`) waits for the
# others before the orders held leave: the sender sends them back to back, but the two processes share two cores,
# and an order arriving after the journal's fdatasync of the first ones would cost another commit and loop turn
FLIGHT_WAIT_S = 0.005


class OrderOps:
    """The order op handlers; the connector's state they work on is declared here (made by `Connector`)."""

    cfg: Any
    published: ConnectorState
    bridge: Bridge
    broker: BrokerPort | None
    ledger: ledger.OrderLedger[bus.Deferred]
    _flight_since: float | None  # when the first order held for the next release came (None: none held)
    _flight_expected: int  # the orders of its flight (the largest `flight` of the orders held)

    def _in_flight_of(self, flight: int) -> None:
        """An order about to be held came with `flight` - 1 others its sender sent together: they are released together,
        after one journal commit (`flight_whole`), not in as many commits as the loop turns they arrive in."""
        if self._flight_since is None or not self.bridge.has_held:  # the first order of the next release
            self._flight_since, self._flight_expected = time.monotonic(), flight
        else:
            self._flight_expected = max(self._flight_expected, flight)

    def flight_whole(self, now: float) -> bool:
        """May the orders held leave now: every order of their flight is held, or the first has waited
        FLIGHT_WAIT_S (one lost with its sender, a repeat joined to its first attempt)?"""
        return (self._flight_since is None or self.bridge.held_count >= self._flight_expected
                or now - self._flight_since >= FLIGHT_WAIT_S)

    def flight_left_s(self, now: float) -> float | None:
        """How long the loop may sleep before the orders held must leave (None: none waits for its flight)."""
        if self._flight_since is None or not self.bridge.has_held:
            return None
        return max(0.0, self._flight_since + FLIGHT_WAIT_S - now)

    def _flight_gone(self) -> None:
        self._flight_since, self._flight_expected = None, 0

    def _order_wait_s(self) -> float:
        b = self.cfg.broker
        return b.order_timeout_s * 3 + b.request_timeout_s * 3 + 15.0  # the client's attempts and reconciles

    def _asked_before(self, step: ledger.Join | ledger.Replay | ledger.LookUp | ledger.Send
                      ) -> bus.Deferred | messages.OrderResult | ledger.Send:
        """The ledger's decision carried out: an order out now joined, one done answered from the journal, one sent
        without a known outcome found at the broker (then journaled); else the `Send`, its `sent` line journaled."""
        if isinstance(step, ledger.Join):
            self.count("orders_joined")
            return self.bridge.joined(step.handle)
        if isinstance(step, ledger.Replay):
            self.count("orders_replayed")
            return step.result
        if isinstance(step, ledger.LookUp):
            step = self.ledger.after_look_up(step, self._look_up(step.entry), time.time())
            if isinstance(step, ledger.Recovered):
                self._journal(step.record)
                self._commit()  # answered now: its line durable first
                self.count("orders_recovered")
                return step.result
        if step.record is not None:
            self._journal(step.record)
        return step

    def _look_up(self, entry: journal.Entry) -> messages.OrderResult | None:
        """An order sent before without a known outcome: found at the broker (its positions, then its deals since
        the send) before anything is resent; None: not executed, or it cannot be told."""
        if not self.ledger.can_look_up(entry):
            return None
        broker = self._need_broker()
        positions = self._wait(broker.get_positions(refresh=True), self.cfg.connector.op_timeout_s, "reconcile")
        found, deals_tell = self.ledger.found_in_positions(entry, positions)
        window = ledger.deals_window(entry, broker.server_time, time.time()) if deals_tell else None
        if window is None:
            return found
        deals = self._wait(broker.get_deals(*window), self.cfg.connector.op_timeout_s, "deals")
        return self.ledger.found_in_deals(entry, deals)

    def _op_order_open(self, a: messages.OrderOpenArgs) -> messages.OrderResult:
        trace.mark("connector.order_in", a.symbol)
        try:
            cid = orders.validate_client_order_id(a.client_order_id)
        except ValueError as exc:
            raise bus.OpError("bad_args", str(exc)) from None
        if a.direction not in (1, -1):
            raise bus.OpError("bad_args", "direction must be +1 (long) or -1 (short)")
        if not a.lots > 0:
            raise bus.OpError("bad_args", "lots must be positive")
        for name, dist in (("sl_distance", a.sl_distance), ("tp_distance", a.tp_distance)):
            if dist is not None and dist < 0:
                raise bus.OpError("bad_args", f"{name} is a price distance from the fill and cannot be negative")
        self._check_symbol(a.symbol)
        broker = self._need_broker()
        request = {
            "symbol": a.symbol,
            "direction": a.direction,
            "lots": a.lots,
            "sl_distance": a.sl_distance,
            "tp_distance": a.tp_distance,
            "server_time": broker.server_time,
        }
        step = self._asked_before(self.ledger.ask_open(cid, request, time.time()))
        if not isinstance(step, ledger.Send):
            return step
        self.count("orders")
        self._in_flight_of(a.flight)
        log.debug("order_open %s %s %+d %g lots", cid, a.symbol, a.direction, a.lots)
        order = broker.market_order(
            a.symbol, a.direction, a.lots, sl_distance=a.sl_distance, tp_distance=a.tp_distance,
            client_order_id=cid, comment=a.comment,
        )
        return self._defer(step.out_key, order, lambda res: self._settle_open(cid, a, res), f"order_open {cid}")

    def _settle_open(self, cid: str, a: messages.OrderOpenArgs, res: OrderResult) -> messages.OrderResult:
        server_time = self.broker.server_time if self.broker is not None else None  # the session may be gone now
        # known open now (durable with the done line, before the answer), even if this process dies before its
        # fill event is published
        if res.success and res.ticket:
            self.published.opened(res.ticket, a.symbol, a.direction, (server_time or time.time()) - 3600, cid,
                                  a.comment)
        done = self.ledger.settled_open(cid, res, time.time())  # None: the same id may be sent again
        if done is not None:
            self._journal(done)
        if not res.success:
            self.count("orders_failed")
        return res

    def _op_order_close(self, a: messages.OrderCloseArgs) -> messages.OrderResult:
        trace.mark("connector.order_in", str(a.ticket))
        broker = self._need_broker()
        if a.lots is not None and not a.lots > 0:
            raise bus.OpError("bad_args", "lots must be positive (or null for the whole position)")
        step = self._asked_before(
            self.ledger.ask_close(a.client_order_id, a.ticket, a.lots, broker.server_time, time.time()))
        if not isinstance(step, ledger.Send):
            return step
        self.count("closes_requested")
        self._in_flight_of(a.flight)
        log.debug("order_close %s ticket %s", a.client_order_id, a.ticket)
        return self._defer(step.out_key, broker.close_position(a.ticket, a.lots),
                           lambda res: self._settle_close(a, res), f"order_close {a.ticket}")

    def _settle_close(self, a: messages.OrderCloseArgs, res: OrderResult) -> messages.OrderResult:
        res, done = self.ledger.settled_close(a.client_order_id, a.ticket, a.lots, res, time.time())
        if done is not None:
            self._journal(done)
        return res

    def _op_order_amend(self, a: messages.OrderAmendArgs) -> bus.Deferred:
        for name, price in (("sl", a.sl), ("tp", a.tp)):
            if price is not None and not (math.isfinite(price) and price > 0):
                raise bus.OpError("bad_args", f"{name} must be a positive price or null, got {price!r}")
        broker = self._need_broker()
        step = self._asked_before(self.ledger.ask_amend(a.ticket))
        if not isinstance(step, ledger.Send):
            return step
        self.count("amends")
        return self._defer(step.out_key, broker.amend_position(a.ticket, a.sl, a.tp), lambda res: res,
                           f"order_amend {a.ticket}")
