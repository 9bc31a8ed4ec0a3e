"""A SUB socket read by its own thread, for test rigs and benches.

The thread matters: a SUB resends its subscriptions after a reconnect (a restarted service) only when its owner
touches the socket, and a PUB drops what it sends before they arrive; so a SUB nobody reads during a restart would
miss the restarted service's first messages.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import zmq

from common import bus

RECONNECT_IVL_MS = 10  # back within 10 ms of a restart (libzmq's default waits 100-200 ms)


class SubReader:
    """Reads `endpoints` for `prefixes` until closed, handing each batch drained, with the `clock`'s time at
    receipt, to `take` (called on the reader's thread)."""

    def __init__(self, endpoints: Iterable[str], prefixes: Iterable[str],
                 take: Callable[[list[bus.Received], float], None], ctx: zmq.Context | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._endpoints = list(endpoints)
        self._prefixes = list(prefixes)
        self._take = take
        self._clock = clock
        self._ctx = ctx or zmq.Context.instance()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError(f"the SUB reader on {self._endpoints} did not start")

    def _run(self) -> None:
        sub = bus.Subscriber(self._ctx, [], self._prefixes, bus.WireErrors("test"))
        sub.sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        for endpoint in self._endpoints:
            bus.connect(sub.sock, endpoint)  # with the server key of the endpoint when CURVE is on
        self._ready.set()
        try:
            while not self._stop.is_set():
                if sub.sock.poll(10):
                    got = sub.drain()
                    if got:
                        self._take(got, self._clock())
        finally:
            sub.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
