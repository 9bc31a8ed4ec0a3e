"""A SUB on the connector's PUB socket for system tests, as any consumer would have (bus.Subscriber); a consumer
of ``bar.`` reads a run (``bars.``, a catch-up's bars in one message) bar by bar, as the preditor does."""

from __future__ import annotations

import dataclasses
import time

import zmq
from harness import Home

from common import bus, messages


class Tap:
    """A SUB on the connector's PUB socket, as any consumer would have (sequence-checked by bus.Subscriber). With a
    ``bar.`` prefix the matching ``bars.`` one too: each run is kept in ``got`` as its bars, one item each (topic
    ``bar.<SYM>.<TF>``, the run's envelope otherwise), and counted in ``runs``."""

    def __init__(self, home: Home, prefixes: list[str]):
        self.ctx = zmq.Context.instance()
        runs = ["bars." + p[len("bar."):] for p in prefixes if p.startswith("bar.")]
        self.sub = bus.Subscriber(
            self.ctx, [home.config().endpoint("connector", "pub")], prefixes + runs, bus.WireErrors("test")
        )
        self.got: list[bus.Received] = []
        self.runs = 0

    def poll(self, seconds: float = 0.2) -> list[bus.Received]:
        new: list[bus.Received] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.sub.sock.poll(50):
                for r in self.sub.drain():
                    new += self._as_bars(r)
        self.got += new
        return new

    def _as_bars(self, r: bus.Received) -> list[bus.Received]:
        run = r.envelope.body
        if not isinstance(run, messages.BarRun):
            return [r]
        self.runs += 1
        topic = messages.bar_topic(run.symbol, run.timeframe)
        return [dataclasses.replace(r, envelope=dataclasses.replace(r.envelope, topic=topic, type="bar", body=b))
                for b in run.bars]

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
