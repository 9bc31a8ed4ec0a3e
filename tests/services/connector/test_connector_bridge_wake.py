"""The bridge's wake pipe: the broker thread's `wake` and the loop's `woken` never leave the flag set with the pipe
empty (the loop would then hear of broker events only at its tick)."""

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


async def _forever(started: threading.Event, cancelled: threading.Event) -> None:
    started.set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancelled.set()
        raise


def test_requests_submitted_together_run_each_and_one_cancelled_stops_on_the_broker_loop():
    aio = BrokerLoop().start()
    try:
        started, cancelled = threading.Event(), threading.Event()
        value, failing, forever = aio.submit_all([_value(1), _fail(), _forever(started, cancelled)])
        assert value.result(5) == 1
        with pytest.raises(ValueError, match="refused"):
            failing.result(5)
        assert started.wait(5)
        assert forever.cancel()
        assert cancelled.wait(5)
    finally:
        aio.stop()


def test_a_wake_asked_on_the_broker_thread_comes_once_the_broker_loop_is_idle():
    bridge = Bridge(lambda: None, lambda: False)
    bridge.start()
    try:
        seen: list[bool] = []

        async def burst() -> None:  # three wakes asked while other callbacks are ready: one byte, after them
            loop = asyncio.get_running_loop()
            for _ in range(3):
                loop.call_soon(lambda: seen.append(_readable(bridge.wake_fd)))
                bridge.wake_soon()

        bridge.submit(burst()).result(5)
        select.select([bridge.wake_fd], [], [], 5.0)
        assert seen == [False, False, False]
        assert os.read(bridge.wake_fd, 16) == b"\0"
    finally:
        bridge.stop()
