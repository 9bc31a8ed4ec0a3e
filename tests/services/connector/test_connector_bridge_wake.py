"""The bridge's wake pipe: a `wake` and the loop's `woken` never leave the flag set with the pipe empty (the loop would
then hear of broker events only at its tick); the broker loop stepped on the connector's own thread."""

from __future__ import annotations

import asyncio
import os
import select
import sys
import threading

import pytest

from services.connector.bridge import Bridge, BrokerLoop


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_a_wake_racing_the_loops_woken_leaves_a_byte_to_read():
    bridge = Bridge(lambda: None, lambda: False)
    rounds, lost = 3000, []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can: the race needs it
    try:
        for i in range(rounds):
            bridge.wake()  # a byte is on the pipe: the loop is about to read it
            go = threading.Barrier(2)
            broker = threading.Thread(target=lambda g=go: (g.wait(), bridge.wake()))
            broker.start()
            go.wait()
            bridge.woken()
            broker.join()
            if bridge._wake_pending and not _readable(bridge.wake_fd):
                lost.append(i)
                bridge.woken()
    finally:
        sys.setswitchinterval(interval)
    assert not lost, f"{len(lost)} of {rounds} wakes left the flag set and the pipe empty (first at round {lost[0]})"


def test_a_wake_after_woken_writes_again():
    bridge = Bridge(lambda: None, lambda: False)
    bridge.wake()
    bridge.wake()  # one byte while one is unread
    assert _readable(bridge.wake_fd)
    bridge.woken()
    assert not _readable(bridge.wake_fd)
    bridge.wake()
    assert _readable(bridge.wake_fd)


async def _value(value: int) -> int:
    return value


async def _fail() -> None:
    raise ValueError("refused")


async def _forever(started: list[bool], cancelled: list[bool]) -> None:
    started.append(True)
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancelled.append(True)
        raise


def _step_until(aio: BrokerLoop, done) -> None:
    """Step the broker loop (as the connector's loop does) until `done()`; its selector waited on meanwhile."""
    for _ in range(1000):
        if done():
            return
        aio.step()
        select.select([aio.fileno()], [], [], 0.01)
    raise AssertionError("not done after 1000 steps")


def test_requests_submitted_together_run_each_and_one_cancelled_stops_on_the_broker_loop():
    aio = BrokerLoop().start()
    try:
        started: list[bool] = []
        cancelled: list[bool] = []
        value, failing, forever = aio.submit_all([_value(1), _fail(), _forever(started, cancelled)])
        assert not value.done() and not started  # nothing runs before the loop is stepped
        aio.step()
        assert value.result(0) == 1
        with pytest.raises(ValueError, match="refused"):
            failing.result(0)
        assert started and not forever.done()
        assert forever.cancel()
        _step_until(aio, lambda: bool(cancelled))
    finally:
        aio.stop()


def test_the_broker_loop_runs_on_the_connectors_thread_and_says_when_its_next_timer_is_due():
    aio = BrokerLoop().start()
    try:
        threads: list[int] = []

        async def later() -> None:
            threads.append(threading.get_ident())
            await asyncio.sleep(0.2)
            threads.append(threading.get_ident())

        fut = aio.submit(later())
        assert aio.next_timer_s() == 0.0  # its task is ready: the loop must not sleep
        aio.step()
        due = aio.next_timer_s()
        assert due is not None and 0.0 < due <= 0.2  # the poll sleeps no longer than the sleep's end
        _step_until(aio, fut.done)
        assert threads == [threading.get_ident()] * 2 and aio.next_timer_s() is None
    finally:
        aio.stop()


def test_a_wake_asked_on_the_broker_loop_comes_once_it_is_idle():
    bridge = Bridge(lambda: None, lambda: False)
    bridge.start()
    try:
        seen: list[bool] = []

        async def burst() -> None:  # three wakes asked while other callbacks are ready: one byte, after them
            loop = asyncio.get_running_loop()
            for _ in range(3):
                loop.call_soon(lambda: seen.append(_readable(bridge.wake_fd)))
                bridge.wake_soon()

        fut = bridge.submit(burst())
        bridge.step()
        assert fut.done() and seen == [False, False, False]
        assert bridge.wake_pending and os.read(bridge.wake_fd, 16) == b"\0"
    finally:
        bridge.stop()


def test_a_wake_asked_in_a_step_comes_as_soon_as_the_loop_is_idle_and_the_step_ends_then():
    aio = BrokerLoop().start()
    try:
        woke: list[int] = []

        async def answered() -> None:  # an order's answer: its wake asked while nothing else is ready
            aio.when_idle(lambda: woke.append(aio._rounds_left))

        aio.submit(answered())
        aio.step(rounds=16)
        # the step's own end is no work: the wake is not put off for the 16 rounds a busy loop would get
        assert woke and woke[0] >= 14
        assert 16 - aio._rounds_left <= 3 and aio.next_timer_s() is None
    finally:
        aio.stop()
