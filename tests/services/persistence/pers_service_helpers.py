"""Shared pieces of the persistence service tests: a home with the persistence process, steps driven over its
REP socket (no orchestrator needed), the sender process, and a stand-in connector on the real endpoints."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import zmq
from pers_sender import SenderAllow

from common import bus, messages

HERE = Path(__file__).resolve().parent
SENDER = HERE / "pers_sender.py"


def step(home: Any, name: str, timeout_ms: int = 15000) -> dict:
    res = home.request("persistence", "step", messages.StepArgs(name), timeout_ms=timeout_ms)
    assert res.ok, res.error
    return res.result


def boot_persistence(home: Any) -> dict:
    """Start the process and take it through persistence.open and persistence.session."""
    home.start("persistence")
    from harness import wait_for

    wait_for(lambda: home.request("persistence", "ping"), 15, "persistence answering")
    step(home, "persistence.open")
    return step(home, "persistence.session")


def start_sender(home: Any, count: int, rate: float, upto: int | None = None) -> subprocess.Popen:
    """The sender process (pers_sender.py): `count` records at `rate` a second, none past the first `upto` until
    `sender_allow` lets it."""
    out = open(home.root / "var" / "log" / "sender.log", "ab")  # noqa: SIM115 - owned by the process
    args = [str(count), str(rate)] + ([str(upto)] if upto is not None else [])
    proc = subprocess.Popen([sys.executable, str(SENDER), *args], cwd=home.root, env=home.env,
                            stdout=out, stderr=subprocess.STDOUT)
    out.close()
    home.procs["sender"] = proc
    return proc


def sender_status(home: Any) -> dict:
    """The sender's counts (its own op, pers_sender.py), as a plain map."""
    return messages.to_wire(home.request("sender", "sender_counts"))


def sender_allow(home: Any, upto: int) -> dict:
    """Let the sender make records up to `upto` (at its rate from now); its counts as a plain map."""
    return messages.to_wire(home.request("sender", "sender_allow", SenderAllow(upto)))


def db_rows(db: Path, sql: str, args: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


class HeartbeatTap:
    """Listens to hb.persistence and keeps every `info` it carried (Espresso: a tap on the stream)."""

    def __init__(self, endpoint: str):
        self.infos: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(endpoint,), daemon=True)
        self._thread.start()

    def _run(self, endpoint: str) -> None:
        ctx = zmq.Context.instance()
        sub = bus.Subscriber(ctx, [endpoint], ["hb.persistence"], bus.WireErrors("tap"))
        try:
            while not self._stop.is_set():
                if sub.sock.poll(100):
                    for r in sub.drain():
                        if isinstance(r.envelope.body, messages.Heartbeat):
                            self.infos.append(dict(r.envelope.body.info))
        finally:
            sub.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


class FakeConnector:
    """Binds the connector's pub and rep endpoints: publishes what a test tells it (with control over the seq,
    to make gaps) and answers `account`, `positions` and `ping` like the connector."""

    def __init__(self, pub: str, rep: str, balance: float = 10_250.0):
        self.ctx = zmq.Context.instance()
        self.publisher = bus.Publisher(self.ctx, pub, "connector", bus.new_epoch())
        self.balance = balance
        self.positions: list[dict] = []
        self.asked: list[str] = []
        self._rep_endpoint = rep
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _serve(self) -> None:
        handlers = {
            messages.OP_ACCOUNT.name: self._account,
            messages.OP_POSITIONS.name: self._positions,
            messages.OP_PING.name: lambda _a: messages.Pong("connector", 0),
        }
        rep = bus.Responder(self.ctx, self._rep_endpoint, handlers, bus.WireErrors("fake-connector"))
        self._ready.set()
        try:
            while not self._stop.is_set():
                if rep.sock.poll(50):
                    rep.serve_ready()
        finally:
            rep.close()

    def _account_info(self) -> messages.AccountInfo:
        return messages.AccountInfo(balance=self.balance, equity=self.balance, margin=0.0, free_margin=self.balance,
                                    margin_level=0.0, currency="EUR", leverage=30.0)

    def _account(self, _a: Any) -> messages.AccountInfo:
        self.asked.append("account")
        return self._account_info()

    def _positions(self, _a: Any) -> messages.Positions:
        self.asked.append("positions")
        return messages.Positions([messages.from_wire(messages.Position, p) for p in self.positions],
                                  self._account_info(), server_time=0.0)

    def publish(self, topic: str, body: Any) -> int:
        return self.publisher.publish(topic, body)

    def skip(self, topic: str, n: int) -> None:
        """Lose n messages of a topic: the next one on it shows a gap."""
        self.publisher.seqs[topic] = self.publisher.seqs.get(topic, 0) + n

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.publisher.close()
