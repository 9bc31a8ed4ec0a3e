"""What the simulator sends for a replay burst, byte for byte, and its state after: held to digests recorded from the
simulator before its burst was made fast (every instant stepped one by one), so a faster replay keeps the stream.

Each scenario opens two raw sessions on real sockets (subscribed to different symbols and live trendbar periods),
opens positions (stops that trigger during the burst, take-profits, swaps over rollovers, a position on a symbol
no one subscribed, partial fills), then advances by bars, ticks and until a time, across a weekend. Recorded: every
frame each session receives from the first advance on, the control replies, the state file and its history."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from services.connector.ctrader import periods as timeframes
from services.connector.ctrader import schemas as proto
from services.connector.sim.control import control
from services.connector.sim.replay import CsvBar
from services.connector.sim.server import SimConfig, SimServer, SimThread

oa = proto.oa
ACCOUNT = 1_000_001
WEDNESDAY = 58  # Wednesday 2017-01-04 08:00 UTC: a triple swap that night, then Thursday, the weekend, Monday
EURUSD, GBPUSD, USDJPY, US500, XAUUSD = 1, 2, 4, 10, 41


class Client:
    """A raw Open API session on a blocking socket: every frame received is kept, in order."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.decoder = proto.FrameDecoder()
        self.frames: list[bytes] = []
        self.cid = 0

    def request(self, msg: Any) -> Any:
        """Send `msg` and read until the frame answering it (every frame before it kept); returns the answer."""
        self.cid += 1
        cid = f"c{self.cid}"
        self.sock.sendall(proto.encode_frame(proto.encode_envelope(msg, cid)))
        while True:
            data = self.sock.recv(1 << 20)
            assert data, "the simulator closed the connection"
            for body in self.decoder.feed(data):
                env = proto.decode_envelope(body)
                if env.HasField("clientMsgId") and env.clientMsgId == cid:
                    return proto.unwrap(env)
                self.frames.append(body)

    def open(self) -> Client:
        self.request(oa.ProtoOAApplicationAuthReq(clientId="sim-client", clientSecret="sim-secret"))
        self.request(oa.ProtoOAAccountAuthReq(ctidTraderAccountId=ACCOUNT, accessToken="sim-token"))
        return self

    def subscribe(self, periods: dict[int, list[str]]) -> None:
        self.request(oa.ProtoOASubscribeSpotsReq(ctidTraderAccountId=ACCOUNT, symbolId=list(periods),
                                                 subscribeToSpotTimestamp=True))
        for sid, names in periods.items():
            for name in names:
                self.request(oa.ProtoOASubscribeLiveTrendbarReq(ctidTraderAccountId=ACCOUNT, symbolId=sid,
                                                                period=timeframes.period_of(name)))

    def order(self, sid: int, side: int, volume: int, sl: int = 0, tp: int = 0) -> None:
        req = oa.ProtoOANewOrderReq(ctidTraderAccountId=ACCOUNT, symbolId=sid, orderType=1, tradeSide=side,
                                    volume=volume)
        if sl:
            req.relativeStopLoss = sl
        if tp:
            req.relativeTakeProfit = tp
        self.request(req)

    def sync(self) -> None:
        """Every frame sent before now has been read."""
        self.request(oa.ProtoOAVersionReq())

    def close(self) -> None:
        self.sock.close()


def digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(4, "big"))
        h.update(p)
    return h.hexdigest()[:24]


def record(bars: list[CsvBar], tmp: Path, interval: int, token_lifetime_s: int = 10 * 365 * 86_400) -> dict:
    state = tmp / "sim.json"
    cfg = SimConfig(host="127.0.0.1", port=0, control_port=0, speed=0, start_bar=WEDNESDAY, spot_interval_s=interval,
                    state_path=str(state), token_lifetime_s=token_lifetime_s, heartbeat_interval=3600.0,
                    client_timeout=10_800.0, rate_limit=1000)
    sim = SimThread(SimServer(cfg, bars=bars)).start()
    try:
        cport = sim.server.control_port
        a = Client(sim.server.port).open()
        b = Client(sim.server.port).open()
        a.subscribe({EURUSD: ["M15", "H1"], GBPUSD: ["H1"], XAUUSD: []})
        b.subscribe({US500: ["M5"], EURUSD: ["H4", "D1"]})
        a.order(EURUSD, 1, 100_000, sl=150, tp=5_000)  # a long whose stop the burst reaches
        a.order(GBPUSD, 2, 200_000, sl=250, tp=250)  # a short, either way
        b.order(EURUSD, 2, 300_000, sl=400)  # a short stopped later
        a.order(XAUUSD, 1, 100)  # no stop: swaps over every rollover, tripled on Wednesday
        a.order(USDJPY, 1, 100_000, sl=90_000, tp=90_000)  # no one subscribed: priced for its stops
        control(cport, "partial_fills", count=1, fraction=0.5)
        b.order(US500, 2, 20, sl=40_000)
        a.sync()
        b.sync()
        a.frames.clear()
        b.frames.clear()
        replies = []
        for cmd in ({"bars": 3}, {"ticks": 37}, {"bars": 1}, {"bars": 70}, {"until": bars[WEDNESDAY + 80].time + 1234},
                    {"bars": 2}):
            reply = control(cport, "advance", **cmd)
            for k in ("port", "control_port"):
                reply.pop(k)
            replies.append(json.dumps(reply, sort_keys=True).encode())
            a.sync()
            b.sync()
        sim.call(sim.server._save_state)
        history = tmp / "sim.json.history.jsonl"
        a.close()
        b.close()
        return {"a": digest(a.frames), "b": digest(b.frames), "frames": [len(a.frames), len(b.frames)],
                "replies": digest(replies), "state": digest([state.read_bytes()]),
                "history": digest([history.read_bytes()] if history.exists() else [])}
    finally:
        sim.stop()


# recorded from the simulator at 45939ac (every instant stepped one by one)
RECORDED = {
    (60, 0): {"a": "3a0dc73fb14501e85c736057", "b": "aa013322a213087e8b43b62a", "frames": [14592, 9597],
              "replies": "05ea36f7c2cd9dbc29f413a1", "state": "52036fb44f81fb2bc240193d",
              "history": "bee10b139f78943c9df9ca74"},
    (900, 0): {"a": "30a1a4d3bd491056401aa81a", "b": "c341e2df6f3d952e6e9b880a", "frames": [1394, 2227],
              "replies": "b817e6ef76d4ba4c148979a7", "state": "52036fb44f81fb2bc240193d",
              "history": "bee10b139f78943c9df9ca74"},
    (3600, 0): {"a": "b52760ef37181559d3e2f47f", "b": "5f747c2b623c3386503fe10a", "frames": [911, 1981],
              "replies": "52cb8b94ef29784335c24724", "state": "52036fb44f81fb2bc240193d",
              "history": "bee10b139f78943c9df9ca74"},
    (900, 30 * 3600): {"a": "d4a829007fccc48e5dfca2b2", "b": "99bf1e434ba15d34fb183211", "frames": [515, 826],
              "replies": "b817e6ef76d4ba4c148979a7", "state": "7c60a99a59e8ca87f786d1f9",
              "history": "bee10b139f78943c9df9ca74"},
}


@pytest.mark.parametrize(("interval", "lifetime"), list(RECORDED))
def test_a_burst_sends_the_recorded_bytes(csv_bars: list[CsvBar], tmp_path: Path, interval: int,
                                          lifetime: int) -> None:
    got = record(csv_bars, tmp_path, interval, lifetime or 10 * 365 * 86_400)
    assert got == RECORDED[(interval, lifetime)]


def record_pipeline_shape(bars: list[CsvBar], tmp: Path) -> dict:
    """bench/pipeline_bench.py's burst: one session on one symbol (spots and H1), spot_interval_s 3600, other
    symbols no one watches (synthetic ones too), a position open all along, 300 bars in one command."""
    cfg = SimConfig(host="127.0.0.1", port=0, control_port=0, speed=0, start_bar=1100, spot_interval_s=3600,
                    synthetic_symbols=3, token_lifetime_s=10 * 365 * 86_400, heartbeat_interval=3600.0,
                    client_timeout=10_800.0)
    sim = SimThread(SimServer(cfg, bars=bars)).start()
    try:
        a = Client(sim.server.port).open()
        a.subscribe({EURUSD: ["H1"]})
        a.order(EURUSD, 1, 100_000, sl=20_000, tp=20_000)
        a.sync()
        a.frames.clear()
        reply = control(sim.server.control_port, "advance", bars=300)
        a.sync()
        a.close()
        for k in ("port", "control_port"):
            reply.pop(k)
        return {"a": digest(a.frames), "frames": len(a.frames), "reply": digest([json.dumps(reply).encode()])}
    finally:
        sim.stop()


def test_the_pipeline_benchs_burst_sends_the_recorded_bytes(csv_bars: list[CsvBar], tmp_path: Path) -> None:
    assert record_pipeline_shape(csv_bars, tmp_path) == {  # recorded at 45939ac, as RECORDED
        "a": "857dd7ff8a19dd2bb739adcf", "frames": 613, "reply": "27f4f95b3de4f5ccba2ff903"}
