"""Clients of the in-process simulator (`SimThread`) for the connector's tests: the cTrader adapter behind the port,
a raw Open API session, and waiting for the adapter's events. Real sockets, the real protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from services.connector.ctrader import parsing
from services.connector.ctrader import periods as timeframes
from services.connector.ctrader.client import CTraderBroker, CTraderConfig
from services.connector.ctrader.schemas import oa
from services.connector.ctrader.tokens import TokenKeeper
from services.connector.ctrader.transport import Transport, TransportConfig
from services.connector.port import Bar
from services.connector.sim.control import acontrol
from services.connector.sim.server import SimThread

SimFactory = Callable[..., SimThread]
ACCOUNT = 1_000_001


def run(coro: Any, timeout: float = 60) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


def broker_config(sim: SimThread, **kw: Any) -> CTraderConfig:
    base: dict[str, Any] = dict(host="127.0.0.1", port=sim.server.port, tls=sim.server.config.tls, verify=False,
                                client_id="sim-client", client_secret="sim-secret", access_token="sim-token",
                                refresh_token="sim-refresh", request_timeout=2.0, order_timeout=2.0,
                                heartbeat_interval=0.5, dead_after=3.0, reconnect_initial=0.05, reconnect_max=0.4,
                                ready_timeout=15.0)
    base.update(kw)
    return CTraderConfig(**base)


async def connected(sim: SimThread, keeper: TokenKeeper | None = None, **kw: Any) -> CTraderBroker:
    broker = CTraderBroker(broker_config(sim, **kw), keeper)
    await broker.connect()
    return broker


async def next_event(broker: CTraderBroker, kind: type, timeout: float = 5.0,
                     seen: list[Any] | None = None) -> Any:
    """The next event of `kind`; events of other kinds are appended to `seen`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(f"no {kind.__name__} within {timeout} s")
        ev = await asyncio.wait_for(broker.events.get(), remaining)
        if isinstance(ev, kind):
            return ev
        if seen is not None:
            seen.append(ev)


async def collect(broker: CTraderBroker, kind: type, n: int, timeout: float = 10.0) -> list[Any]:
    return [await next_event(broker, kind, timeout) for _ in range(n)]


class RawSession:
    """A raw Open API session; `events` collects every event frame (spots, executions, errors) in arrival order."""

    def __init__(self, sim: SimThread) -> None:
        self.sim = sim
        self.events: list[Any] = []
        self.answers: dict[str, Any] = {}  # clientMsgId -> the frame that answered it (see `exchange`)
        self.answered: list[tuple[str, Any]] = []  # every frame with a clientMsgId no request waited for, in order
        self.tr = Transport(TransportConfig("127.0.0.1", sim.server.port, tls=sim.server.config.tls, verify=False,
                                            request_timeout=5), on_event=self._on_event)

    @property
    def spots(self) -> list[Any]:
        return [e for e in self.events if e.DESCRIPTOR.name == "ProtoOASpotEvent"]

    def _on_event(self, ptype: int, msg: Any, cid: str) -> None:
        if msg is None:
            return
        if cid:
            self.answers[cid] = msg
            self.answered.append((cid, msg))
        else:
            self.events.append(msg)

    async def exchange(self, msg: Any, cid: str, timeout: float = 5.0) -> Any:
        """Send `msg` with clientMsgId `cid` and return whatever frame answers it (a response, an error, an event)."""
        await self.tr.send(msg, cid)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while cid not in self.answers:
            if loop.time() > deadline:
                raise TimeoutError(f"no answer to {msg.DESCRIPTOR.name} ({cid})")
            await asyncio.sleep(0.005)
        return self.answers.pop(cid)

    async def open(self, access_token: str = "sim-token") -> RawSession:
        await self.tr.connect()
        await self.tr.request(oa.ProtoOAApplicationAuthReq(clientId="sim-client", clientSecret="sim-secret"))
        await self.tr.request(oa.ProtoOAAccountAuthReq(ctidTraderAccountId=ACCOUNT, accessToken=access_token))
        return self

    async def request(self, msg: Any) -> Any:
        return await self.tr.request(msg)

    async def subscribe(self, symbol_ids: list[int], periods: dict[int, list[str]] | None = None) -> None:
        await self.request(oa.ProtoOASubscribeSpotsReq(ctidTraderAccountId=ACCOUNT, symbolId=symbol_ids,
                                                       subscribeToSpotTimestamp=True))
        for sid, names in (periods or {}).items():
            for name in names:
                await self.request(oa.ProtoOASubscribeLiveTrendbarReq(
                    ctidTraderAccountId=ACCOUNT, symbolId=sid, period=timeframes.period_of(name)))
        await self.request(oa.ProtoOAVersionReq())  # the snapshots sent after the answers are read too

    async def advance(self, **args: Any) -> dict:
        """Advance the market, then a round trip: every frame the advance wrote has been read."""
        reply = await acontrol(self.sim.server.control_port, "advance", **args)
        await self.request(oa.ProtoOAVersionReq())
        return reply

    async def trendbars(self, sid: int, period: str, from_ms: int, to_ms: int, count: int = 0) -> list[Bar]:
        req = oa.ProtoOAGetTrendbarsReq(ctidTraderAccountId=ACCOUNT, symbolId=sid,
                                        period=timeframes.period_of(period), fromTimestamp=from_ms, toTimestamp=to_ms)
        if count:
            req.count = count
        res = await self.request(req)
        return [parsing.trendbar_to_bar(tb, "X", 5) for tb in res.trendbar]

    async def close(self) -> None:
        await self.tr.close()
