"""A SUB on the connector's PUB socket for system tests, as any consumer would have (bus.Subscriber)."""

from __future__ import annotations

import time

import zmq
from harness import Home

from common import bus


class Tap:
    """A SUB on the connector's PUB socket, as any consumer would have (sequence-checked by bus.Subscriber)."""

    def __init__(self, home: Home, prefixes: list[str]):
        self.ctx = zmq.Context.instance()
        self.sub = bus.Subscriber(
            self.ctx, [home.config().endpoint("connector", "pub")], prefixes, bus.WireErrors("test")
        )
        self.got: list[bus.Received] = []

    def poll(self, seconds: float = 0.2) -> list[bus.Received]:
        new: list[bus.Received] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.sub.sock.poll(50):
                new += self.sub.drain()
        self.got += new
        return new

    def wait(self, pred, timeout: float, what: str) -> list[bus.Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll(0.1)
            if pred(self.got):
                return self.got
        raise AssertionError(f"timed out waiting for {what}; got {[r.envelope.topic for r in self.got][-20:]}")

    def bodies(self, prefix: str) -> list:
        return [r.envelope.body for r in self.got if r.envelope.topic.startswith(prefix)]

    def close(self) -> None:
        self.sub.close()
