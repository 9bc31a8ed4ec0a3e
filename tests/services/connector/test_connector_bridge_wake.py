"""The bridge's wake pipe: the broker thread's `wake` and the loop's `woken` never leave the flag set with the pipe
empty (the loop would then hear of broker events only at its tick)."""

from __future__ import annotations

import select
import sys
import threading

from services.connector.bridge import Bridge


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
