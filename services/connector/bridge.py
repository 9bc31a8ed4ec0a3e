"""The bridge between the connector's two threads, one owner per resource:
- the runtime loop thread owns every ZeroMQ socket (ROUTER, PUB, heartbeats), the state file and the order journal;
- one asyncio loop thread (``BrokerLoop``) runs the broker adapter behind the port (its transport, reconnects, bars).

A request handler submits a coroutine to the asyncio loop (``run_coroutine_threadsafe``) and either waits for it
(``Bridge.wait``: beating and publishing meanwhile, so a long request never stops heartbeats) or does not
(``Bridge.defer``: it answers a ``bus.Deferred`` whose reply goes out when the broker has answered; the future's
completion wakes the loop, so the orders of one bar are out together). A deferred request may be held until what
must be durable before it leaves is (``hold``, ``release``: an order's journal line, once per batch of orders), and
its result is settled in the loop thread (``answered_now``), its reply given once what the settling wrote is durable
(``answer``: the outcomes of a batch of orders journaled with one fsync). Broker events (closed bars, fills, closes,
rejections, connection changes) are moved by a pump task onto a thread-safe queue, a byte on a pipe wakes the loop
(``wake_fd``, read by the loop's ``add_reader``), and the loop thread alone takes them (``take_events``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from common import bus
from services.connector.port import (
    AuthenticationError,
    BrokerConnectionError,
    BrokerError,
    BrokerPort,
    BrokerRequestError,
    BrokerTimeout,
    SymbolNotFoundError,
)

SWITCH_INTERVAL_S = 0.0005  # sys.setswitchinterval while the broker thread runs (see BrokerLoop.start)
POLL_S = 0.05  # how often a waiting request beats and publishes
# a wake of the loop thread asked on the broker thread waits until the broker loop has nothing else ready to run, for
# at most this many of its turns: the answer to an order and the fill it made (a few callbacks apart) wake it once
IDLE_WAKE_TURNS = 16


class BrokerLoop:
    """An asyncio event loop on a daemon thread: the broker client's home."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="broker-loop", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> BrokerLoop:
        # two threads share the GIL: a thread ready to run waits up to the switch interval for the one holding it
        # (5 ms by default, a bar's whole budget); the loop thread answering an order must not wait that long on
        # the broker thread parsing a burst of quotes, nor the other way round
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._thread.start()
        return self

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def submit_all(self, coros: list[Coroutine[Any, Any, Any]]) -> list[concurrent.futures.Future]:
        """`submit` for several coroutines with one wake of the loop (one call_soon_threadsafe: one write to its
        self-pipe, one turn of its selector, however many): each runs as a task of its own, its future as
        `run_coroutine_threadsafe`'s (the outcome copied when the task is done; cancelled, it cancels the task)."""
        futures = [concurrent.futures.Future() for _ in coros]
        self.loop.call_soon_threadsafe(self._start_all, list(zip(coros, futures, strict=True)))
        return futures

    def when_idle(self, fn: Callable[[], None], turns: int = IDLE_WAKE_TURNS) -> None:
        """On the loop's thread: call `fn` once nothing else is ready to run on the loop (the callbacks a burst of
        frames scheduled have all run), or `turns` turns of the loop from now at the latest."""
        if turns <= 0 or not getattr(self.loop, "_ready", None):  # CPython's queue of the callbacks ready to run
            fn()
            return
        try:
            self.loop.call_soon(self.when_idle, fn, turns - 1)
        except RuntimeError:  # the loop is closing
            fn()

    def _start_all(self, jobs: list[tuple[Coroutine[Any, Any, Any], concurrent.futures.Future]]) -> None:
        for coro, fut in jobs:
            if fut.cancelled():  # given up on before the loop took it
                coro.close()
                continue
            task = self.loop.create_task(coro)
            task.add_done_callback(functools.partial(_copy_outcome, fut))
            fut.add_done_callback(functools.partial(self._cancel_task, task))

    def _cancel_task(self, task: asyncio.Task, fut: concurrent.futures.Future) -> None:
        """A future of `submit_all` cancelled (in any thread): its task cancelled on the loop."""
        if fut.cancelled() and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(task.cancel)

    def stop(self) -> None:
        """Cancel what still runs there (the event pump, orders given up on), then stop the loop."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._cancel_all(), self.loop)
            self._thread.join(5)
        if not self._thread.is_alive() and not self.loop.is_closed():
            self.loop.close()

    async def _cancel_all(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.loop.stop()


def _copy_outcome(fut: concurrent.futures.Future, task: asyncio.Task) -> None:
    """A task's outcome onto the future another thread waits on (as `run_coroutine_threadsafe` does)."""
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
    """A deferred request: its coroutine, what settles its result, the future of its reply (set by the loop thread)
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
    """The loop thread's side: `meanwhile()` runs while a request waits (beat, publish), `stopping()` says the
    process is stopping (a waiting request is answered at once)."""

    def __init__(self, meanwhile: Callable[[], None], stopping: Callable[[], bool]) -> None:
        self._meanwhile = meanwhile
        self._stopping = stopping
        self._aio: BrokerLoop | None = None
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pumping = False
        self._held: list[_Out] = []  # deferred requests not sent yet (`release`)
        self._out: list[_Out] = []  # deferred requests sent, their answers not settled yet
        # the broker thread writes a byte here after queueing an event, so the loop takes it at once
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._wake_w, False)
        self._wake_pending = False  # a byte is on the pipe, unread by `woken`
        self._wake_lock = threading.Lock()
        self._wake_soon = False  # a `wake` is scheduled on the broker loop (`wake_soon`; broker thread only)

    @property
    def running(self) -> bool:
        return self._aio is not None

    def start(self) -> None:
        if self._aio is None:
            self._aio = BrokerLoop().start()

    def stop(self) -> None:
        if self._aio is not None:
            self._aio.stop()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        assert self._aio is not None
        return self._aio.submit(coro)

    def wait(self, coro: Coroutine[Any, Any, Any], timeout: float | None, what: str) -> Any:
        """Run `coro` on the broker loop and wait for it, beating and publishing meanwhile."""
        fut = self.submit(coro)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            done, _ = concurrent.futures.wait([fut], timeout=POLL_S)
            if done:
                try:
                    return fut.result()
                except Exception as exc:
                    raise op_error(exc, what) from exc
            self._meanwhile()
            if self._stopping():  # SIGTERM while waiting: answer now, the process is stopping
                fut.cancel()
                raise bus.OpError("stopping", f"{what}: the connector is stopping")
            if deadline is not None and time.monotonic() >= deadline:
                fut.cancel()
                raise bus.OpError("timeout", f"{what}: no answer from the broker in {timeout:g} s")

    def defer(self, coro: Coroutine[Any, Any, Any], settle: Callable[[Any], Any], what: str, wait_s: float,
              answered: Callable[[bus.Deferred], None] | None = None, hold: bool = False) -> bus.Deferred:
        """Run `coro` on the broker loop without waiting: the loop goes on serving other requests and the reply goes
        out when the broker answers (or after `wait_s`). When it has, the loop thread runs `answered(deferred)` then
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

    def release(self) -> int:
        """Send the requests held (`defer(hold=True)`), with one wake of the broker loop for all; how many."""
        held, self._held = self._held, []
        live = []
        for out in held:
            if out.answer.cancelled():  # given up on (past its wait) before it left
                out.coro.close()
            else:
                live.append(out)
        if len(live) == 1:
            self._send(live[0])
        elif live:
            assert self._aio is not None
            for out, sent in zip(live, self._aio.submit_all([out.coro for out in live]), strict=True):
                self._sent(out, sent)
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
        """The requests the broker has answered since the last call, settled (in the loop thread): their replies
        for `answer`, given once what the settling wrote is durable."""
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
        """A request's future is done: on the broker thread (answered), the loop woken once the broker loop has
        run what else the same frames made ready (the fill an order's answer came with); elsewhere (cancelled by
        the loop thread) at once."""
        if sent.cancelled() or self._aio is None:
            self.wake()
        else:
            self.wake_soon()

    def wake_soon(self) -> None:
        """On the broker thread: `wake` once the broker loop has nothing else ready to run (`BrokerLoop.when_idle`),
        one wake however many asked meanwhile."""
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
        """An event found by the loop thread itself (a close while away): taken like the broker's."""
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
