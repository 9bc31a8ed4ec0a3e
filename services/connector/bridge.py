"""The bridge between the connector's loop and the broker adapter's asyncio loop, both on one thread:
- the runtime loop owns every ZeroMQ socket (ROUTER, PUB, heartbeats), the state file and the order journal;
- the broker adapter (its transport, reconnects, bars) runs on an asyncio loop (``BrokerLoop``) that the runtime
  loop steps: its selector is polled beside the ZeroMQ sockets, and the runtime loop's sleep is bounded by its next
  timer. No thread hop: an order released after its journal line is durable is written to the broker's connection
  in the same turn (``step``), and a broker frame read is taken in the turn that read it (no GIL shared with another
  thread, no wake of another thread per order or per frame).

A request handler submits a coroutine to the asyncio loop and either waits for it (``Bridge.wait``: running the
loop, beating and publishing meanwhile, so a long request never stops heartbeats) or does not (``Bridge.defer``:
it answers a ``bus.Deferred`` whose reply goes out when the broker has answered; the future's completion wakes the
loop, so the orders of one bar are out together). A deferred request may be held until what must be durable
before it leaves is (``hold``, ``release``: an order's journal line, once per batch of orders), and its result is
settled in the loop (``answered_now``), its reply given once what the settling wrote is durable (``answer``: the
outcomes of a batch of orders journaled with one fsync). Broker events (closed bars, fills, closes, rejections,
connection changes) are moved by a pump task onto a queue, a byte on a pipe says so (``wake_fd``, read by the
loop's ``add_reader``; the connector takes it in the same turn), and the loop alone takes them (``take_events``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import queue
import selectors
import threading
import time
from asyncio import events
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from common import bus, trace
from services.connector.port import (
    AuthenticationError,
    BrokerConnectionError,
    BrokerError,
    BrokerPort,
    BrokerRequestError,
    BrokerTimeout,
    SymbolNotFoundError,
)

STEP_ROUNDS = 64  # rounds of the broker loop one step runs at most while callbacks stay ready
POLL_S = 0.05  # how often a waiting request beats and publishes
DUE_WITHIN_S = 0.001  # a broker loop's timer this close is run at the loop's tick (the poll sleeps in whole ms)
# a wake of the connector's turn asked on the broker loop waits until the broker loop has nothing else ready to run, for
# at most this many of its turns: the answer to an order and the fill it made (a few callbacks apart) wake it once
IDLE_WAKE_TURNS = 16


class BrokerLoop:
    """The broker client's asyncio event loop, run on the connector's loop thread: stepped by that loop (`step`)
    whenever its selector has I/O ready (`fileno`, polled beside the ZeroMQ sockets), at each turn, and right after
    the orders of a turn are released, so an order is written to the broker's connection with no thread hop and no
    wake of another thread. Nothing here sleeps: the connector's poll sleeps, bounded by the loop's next timer
    (`next_timer_s`)."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.loop = asyncio.SelectorEventLoop(self.selector)
        self._rounds_left = 0  # rounds the step running may still run after this one

    def fileno(self) -> int:
        """The loop's selector: readable when a socket of the broker's (or the loop's own wake pipe) is."""
        return self.selector.fileno()

    def start(self) -> BrokerLoop:
        asyncio.set_event_loop(self.loop)
        return self

    def step(self, rounds: int = STEP_ROUNDS) -> None:
        """Run what is ready now (the I/O ready, the timers due, the callbacks they make ready), never sleeping: the
        loop's rounds until one leaves nothing ready, at most `rounds` rounds (the rest at the next step).

        CPython's round (`_run_once`: select, the timers due, the ready callbacks) run here as `run_forever` runs
        it, the loop marked running on this thread meanwhile (`get_running_loop`, `is_running`), without
        `run_forever`'s set-up and tear-down and the stopper callback it needs to end (a step a broker frame, an
        order released, a timer: tens a bar). `_stopping` set makes each round's select poll without sleeping, as
        it does for a loop about to stop."""
        loop = self.loop
        if loop.is_closed() or loop.is_running():
            return
        run_once = loop._run_once  # CPython's round, as run_forever calls it
        loop._thread_id = threading.get_ident()
        loop._stopping = True
        events._set_running_loop(loop)
        try:
            for left in range(rounds - 1, -1, -1):
                self._rounds_left = left
                run_once()
                if not loop._ready:
                    break
        finally:
            loop._stopping = False
            loop._thread_id = None
            events._set_running_loop(None)

    def _busy(self) -> bool:
        """A callback is ready to run (CPython's queue of them, `_ready`)."""
        return bool(getattr(self.loop, "_ready", ()))

    def run_until(self, fut: asyncio.Future, timeout: float) -> None:
        """Run the loop until `fut` is done or `timeout` has passed (sleeping in its selector meanwhile)."""
        if not fut.done() and not self.loop.is_closed():
            self.loop.run_until_complete(asyncio.wait({fut}, timeout=timeout))

    def next_timer_s(self) -> float | None:
        """Seconds until the loop's first timer is due (0: a callback is ready now); None: no timer."""
        loop = self.loop
        if getattr(loop, "_ready", None):
            return 0.0
        scheduled = getattr(loop, "_scheduled", None)  # CPython's heap of timer handles
        if not scheduled:
            return None
        return max(0.0, scheduled[0].when() - loop.time())

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        return self.submit_all([coro])[0]

    def submit_all(self, coros: list[Coroutine[Any, Any, Any]]) -> list[concurrent.futures.Future]:
        """Each coroutine a task of its own, started at the loop's next step; its outcome copied onto a future (as
        `run_coroutine_threadsafe`'s) when the task is done; the future cancelled, it cancels the task."""
        futures = [concurrent.futures.Future() for _ in coros]
        for coro, fut in zip(coros, futures, strict=True):
            task = self.loop.create_task(coro)
            task.add_done_callback(functools.partial(_copy_outcome, fut))
            fut.add_done_callback(functools.partial(_cancel_task, task))
        return futures

    def when_idle(self, fn: Callable[[], None], turns: int = IDLE_WAKE_TURNS) -> None:
        """In a step of the loop: call `fn` once nothing else is ready to run on the loop (the callbacks a burst of
        frames scheduled have all run), or `turns` turns of the loop from now at the latest."""
        if turns <= 0 or not self._busy():
            fn()
            return
        try:
            self.loop.call_soon(self.when_idle, fn, turns - 1)
        except RuntimeError:  # the loop is closing
            fn()

    def stop(self) -> None:
        """Cancel what still runs there (the event pump, orders given up on), let it end, then close the loop."""
        loop = self.loop
        if loop.is_closed() or loop.is_running():
            return
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.wait(tasks, timeout=5))
        loop.close()


def _cancel_task(task: asyncio.Task, fut: concurrent.futures.Future) -> None:
    """A future of `submit_all` cancelled: its task cancelled."""
    if fut.cancelled() and not task.get_loop().is_closed():
        task.cancel()


def _copy_outcome(fut: concurrent.futures.Future, task: asyncio.Task) -> None:
    """A task's outcome onto the future the connector's loop looks at (as `run_coroutine_threadsafe` does)."""
    if task.cancelled():
        fut.cancel()
    if not fut.set_running_or_notify_cancel():
        return
    exc = task.exception()
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(task.result())


def op_error(exc: BaseException, what: str) -> bus.OpError:
    """A broker failure as a clear error answer."""
    if isinstance(exc, bus.OpError):
        return exc
    if isinstance(exc, SymbolNotFoundError):
        return bus.OpError("unknown_symbol", str(exc))
    if isinstance(exc, AuthenticationError):
        return bus.OpError("auth_failed", f"{what}: the broker refused the credentials: {exc}")
    if isinstance(exc, BrokerConnectionError):
        return bus.OpError("not_connected", f"{what}: the broker is not connected: {exc}")
    if isinstance(exc, BrokerTimeout | TimeoutError):
        return bus.OpError("timeout", f"{what}: the broker did not answer in time: {exc}")
    if isinstance(exc, BrokerRequestError):
        return bus.OpError("broker_error", f"{what}: the broker refused: {exc}")
    if isinstance(exc, BrokerError):
        return bus.OpError("broker_error", f"{what}: {exc}")
    if isinstance(exc, ValueError):
        return bus.OpError("bad_args", f"{what}: {exc}")
    return bus.OpError("internal", f"{what}: {type(exc).__name__}: {exc}")


@dataclass(eq=False)
class _Out:
    """A deferred request: its coroutine, what settles its result, the future of its reply (set by the loop's turn)
    and, once sent, the broker loop's future."""

    coro: Coroutine[Any, Any, Any]
    settle: Callable[[Any], Any]
    what: str
    answered: Callable[[bus.Deferred], None] | None
    answer: concurrent.futures.Future
    deferred: bus.Deferred | None = None
    sent: concurrent.futures.Future | None = None


def _reply(answer: concurrent.futures.Future) -> Any:
    ok, value = answer.result()
    if not ok:
        raise value
    return value


class Bridge:
    """The connector loop's side: `meanwhile()` runs while a request waits (beat, publish), `stopping()` says the
    process is stopping (a waiting request is answered at once)."""

    def __init__(self, meanwhile: Callable[[], None], stopping: Callable[[], bool]) -> None:
        self._meanwhile = meanwhile
        self._stopping = stopping
        self._loop = BrokerLoop()  # stepped once started (`start`); its selector polled from the first turn
        self._aio: BrokerLoop | None = None
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pumping = False
        self._held: list[_Out] = []  # deferred requests not sent yet (`release`)
        self._out: list[_Out] = []  # deferred requests sent, their answers not settled yet
        self._answers_in = False  # a request of `_out` was answered (or cancelled) since `answered_now` last looked
        # a byte is written here after an event is queued or an answer came (on the broker loop, in a step), so the
        # connector's loop takes them at once (it also looks after each step: `wake_pending`)
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._wake_w, False)
        self._wake_pending = False  # a byte is on the pipe, unread by `woken`
        self._wake_lock = threading.Lock()
        self._wake_soon = False  # a `wake` is scheduled on the broker loop (`wake_soon`)

    @property
    def running(self) -> bool:
        return self._aio is not None

    @property
    def io_fd(self) -> int:
        """The broker loop's selector, to poll: readable when the broker's connection (or the loop) has work."""
        return self._loop.fileno()

    @property
    def wake_pending(self) -> bool:
        return self._wake_pending

    def start(self) -> None:
        if self._aio is None:
            self._aio = self._loop.start()

    def stop(self) -> None:
        if self._aio is not None:
            self._aio.stop()

    def step(self) -> None:
        """Run what is ready on the broker loop now (frames read, timers due, orders released), never sleeping."""
        if self._aio is not None:
            self._aio.step()

    def step_if_due(self) -> None:
        """`step` when a callback is ready or a timer is due (the loop's tick: its I/O is stepped as it comes)."""
        due = self._aio.next_timer_s() if self._aio is not None else None
        if due is not None and due <= DUE_WITHIN_S:
            self.step()

    def next_timer_s(self) -> float | None:
        """Seconds until the broker loop next has something to do that no I/O brings (None: nothing)."""
        return self._aio.next_timer_s() if self._aio is not None else None

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        assert self._aio is not None
        return self._aio.submit(coro)

    def wait(self, coro: Coroutine[Any, Any, Any], timeout: float | None, what: str) -> Any:
        """Run `coro` on the broker loop and wait for it, beating and publishing meanwhile."""
        aio = self._aio
        assert aio is not None
        task = aio.loop.create_task(coro)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            aio.run_until(task, POLL_S)
            if task.done():
                try:
                    return task.result()
                except Exception as exc:
                    raise op_error(exc, what) from exc
            self._meanwhile()
            if self._stopping():  # SIGTERM while waiting: answer now, the process is stopping
                task.cancel()
                aio.step()
                raise bus.OpError("stopping", f"{what}: the connector is stopping")
            if deadline is not None and time.monotonic() >= deadline:
                task.cancel()
                aio.step()
                raise bus.OpError("timeout", f"{what}: no answer from the broker in {timeout:g} s")

    def defer(self, coro: Coroutine[Any, Any, Any], settle: Callable[[Any], Any], what: str, wait_s: float,
              answered: Callable[[bus.Deferred], None] | None = None, hold: bool = False) -> bus.Deferred:
        """Run `coro` on the broker loop without waiting: the loop goes on serving other requests and the reply goes
        out when the broker answers (or after `wait_s`). When it has, the loop's turn runs `answered(deferred)` then
        `settle(result)` once (`answered_now`), and gives the reply when what `settle` wrote is durable
        (`answer`): whoever takes it (the asker or one who joined it) gets that. `hold`: not sent before `release`
        (what must be durable before it leaves is not yet)."""
        out = _Out(coro, settle, what, answered, concurrent.futures.Future())
        out.deferred = bus.Deferred(out.answer, _reply, time.monotonic() + wait_s, what)
        if hold:
            self._held.append(out)
        else:
            self._send(out)
        return out.deferred

    @property
    def has_held(self) -> bool:
        return bool(self._held)

    @property
    def held_count(self) -> int:
        return len(self._held)

    def release(self) -> int:
        """Send the requests held (`defer(hold=True)`): each a task on the broker loop, stepped now, so each is written
        to the broker's connection before this returns (unless the broker loop must wait: a rate limit, no session);
        how many."""
        held, self._held = self._held, []
        live = []
        for out in held:
            if out.answer.cancelled():  # given up on (past its wait) before it left
                out.coro.close()
            else:
                live.append(out)
        if live:
            assert self._aio is not None
            c0 = time.thread_time() if trace.ON else 0.0
            trace.mark("connector.release_from", str(len(live)))
            for out, sent in zip(live, self._aio.submit_all([out.coro for out in live]), strict=True):
                self._sent(out, sent)
            self._aio.step()
            if trace.ON:  # the step's wall time (from the mark before) against its thread's CPU: off the CPU meanwhile
                trace.mark("connector.release_done", f"{len(live)} cpu {(time.thread_time() - c0) * 1000:.3f}ms")
        return len(held)

    def refuse_held(self, error: bus.OpError) -> None:
        """Answer the requests held with `error`, never sending them."""
        held, self._held = self._held, []
        for out in held:
            out.coro.close()
            self.answer([(out.answer, (False, error))])

    def _send(self, out: _Out) -> None:
        if out.answer.cancelled():  # given up on (past its wait) before it left
            out.coro.close()
            return
        self._sent(out, self.submit(out.coro))

    def _sent(self, out: _Out, sent: concurrent.futures.Future) -> None:
        """`out` is running on the broker loop (`sent`): its answer wakes this loop; given up on, it is cancelled."""
        out.sent = sent
        sent.add_done_callback(self._answered)
        out.answer.add_done_callback(lambda a: sent.cancel() if a.cancelled() else None)
        self._out.append(out)

    def answered_now(self) -> list[tuple[concurrent.futures.Future, tuple[bool, Any]]]:
        """The requests the broker has answered since the last call, settled (in the loop's turn): their replies
        for `answer`, given once what the settling wrote is durable."""
        if not self._answers_in:  # the loop's every turn asks: most turns, no request was answered since
            return []
        self._answers_in = False
        ready, still = [], []
        for out in self._out:
            assert out.sent is not None
            if not out.sent.done():
                still.append(out)
                continue
            if out.answer.cancelled():  # its asker had a timeout reply, as if the broker never answered
                continue
            if out.answered is not None:
                out.answered(out.deferred)
            try:
                ready.append((out.answer, (True, out.settle(out.sent.result()))))
            except Exception as exc:
                ready.append((out.answer, (False, op_error(exc, out.what))))
        self._out = still
        return ready

    @staticmethod
    def answer(ready: list[tuple[concurrent.futures.Future, tuple[bool, Any]]]) -> None:
        for fut, outcome in ready:
            with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled past its wait meanwhile
                fut.set_result(outcome)

    @staticmethod
    def joined(first: bus.Deferred) -> bus.Deferred:
        """Another asker's reply to the same answer."""
        return bus.Deferred(first.future, first.finish, first.deadline, first.what)

    # ---- events from the broker ------------------------------------------------------------------
    def _answered(self, sent: concurrent.futures.Future) -> None:
        """A request's future is done: answered (in a step of the broker loop), the loop woken once the broker loop
        has run what else the same frames made ready (the fill an order's answer came with); cancelled, at once."""
        self._answers_in = True
        if sent.cancelled() or self._aio is None:
            self.wake()
        else:
            self.wake_soon()

    def wake_soon(self) -> None:
        """In a step of the broker loop: `wake` once it has nothing else ready to run (`BrokerLoop.when_idle`), one
        wake however many asked meanwhile."""
        if self._wake_soon:
            return
        self._wake_soon = True
        assert self._aio is not None
        self._aio.when_idle(self._wake_now)

    def _wake_now(self) -> None:
        self._wake_soon = False
        self.wake()

    def wake(self) -> None:
        """Wake the loop: one byte on the pipe, none while one is there unread (`woken` has not run since): the loop
        takes everything queued before it when it reads that one."""
        with self._wake_lock:
            if self._wake_pending:
                return
            self._wake_pending = True
            with contextlib.suppress(BlockingIOError, OSError):  # full: awake already; closed: stopping
                os.write(self._wake_w, b"\0")

    def woken(self) -> None:
        """The loop read the wake pipe: empty it (before taking what woke it: a wake from now on writes again).
        Under the lock that `wake` takes: the flag says "a byte is on the pipe" and nothing else. Without it, a wake
        between clearing the flag and reading the pipe had its byte read here and left the flag set with an empty
        pipe: no wake wrote again, and every later broker event waited for the loop's 100 ms tick."""
        with self._wake_lock:
            with contextlib.suppress(BlockingIOError):
                while os.read(self.wake_fd, 4096):
                    pass
            self._wake_pending = False

    def pump(self, broker: BrokerPort) -> None:
        """Move the broker's events onto the queue from now on (once per process)."""
        if not self._pumping:
            self.submit(self._pump(broker))
            self._pumping = True

    async def _pump(self, broker: BrokerPort) -> None:
        """Every event queued by the time the pump runs crosses at once, with one wake: the bars a burst of spots
        closed are taken (and their state committed) together."""
        events = broker.events
        while True:
            self._events.put(await events.get())
            while not events.empty():
                self._events.put(events.get_nowait())
            self.wake_soon()

    def put(self, event: Any) -> None:
        """An event found by the connector itself (a close while away): taken like the broker's."""
        self._events.put(event)

    def take_events(self, limit: int) -> list[Any]:
        if self._events.empty():
            return []
        events = []
        for _ in range(limit):
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                break
        return events
