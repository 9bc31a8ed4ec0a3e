"""A real ``bus.Responder`` served by a thread as the connector's loop serves it (poll, serve what is ready, flush
the deferred answers): the stand-in connector of the executor's order tests."""

from __future__ import annotations

import threading
import time

from common import bus


class Anyone:
    """A permit every role is in: the tests' callers make no handshake."""

    def __contains__(self, _role: object) -> bool:
        return True


def open_to_anyone(server: bus.Responder) -> bus.Responder:
    """Every op served to any caller (no readiness handshake in these tests)."""
    server.permits = dict.fromkeys(server.permits, Anyone())
    server.self_ops = frozenset()
    return server


class Served:
    """``server`` served by its own thread until ``stop``, which closes it."""

    def __init__(self, server: bus.Responder):
        self.server = server
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self.server.sock.poll(2)
            self.server.serve_ready()
            self.server.flush(time.monotonic())
        self.server.close()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
