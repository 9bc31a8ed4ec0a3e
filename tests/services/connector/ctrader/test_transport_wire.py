"""The transport's connection (its asyncio protocol) over real loopback sockets, against a bare asyncio server: frames
dispatched in order as they are read, a frame that cannot be read ending the connection with nothing after it
dispatched, the peer's close, and writes held while the socket's buffer is full (none lost, none reordered)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from services.connector.ctrader import schemas as proto
from services.connector.ctrader.transport import ConnectionClosed, Transport, TransportConfig

oa = proto.oa


def frame(msg: Any, cid: str | None = None) -> bytes:
    return proto.encode_frame(proto.encode_envelope(msg, cid))


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def with_server(handler: Handler, body: Callable[[int], Awaitable[None]]) -> None:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        await body(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


def config(port: int) -> TransportConfig:
    return TransportConfig("127.0.0.1", port, tls=False, request_timeout=5, heartbeat_interval=60, dead_after=60,
                           rate_limit=1_000_000)


def test_frames_split_across_reads_are_dispatched_in_order_and_answers_resolve_requests() -> None:
    versions = [f"v{i}" for i in range(200)]
    stream = b"".join(frame(oa.ProtoOAVersionRes(version=v)) for v in versions)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = proto.decode_envelope((await reader.readexactly(int.from_bytes(await reader.readexactly(4))))[:])
        for i in range(0, len(stream), 97):  # frames cut anywhere, across writes
            writer.write(stream[i:i + 97])
            await writer.drain()
        writer.write(frame(oa.ProtoOAVersionRes(version="answer"), request.clientMsgId))
        await writer.drain()
        await reader.read()  # until the client closes
        writer.close()

    async def body(port: int) -> None:
        seen: list[str] = []
        tr = Transport(config(port), on_event=lambda ptype, msg, cid: seen.append(msg.version))
        await tr.connect()
        answer = await tr.request(oa.ProtoOAVersionReq())
        assert answer.version == "answer"
        assert seen == versions  # every event before the answer, in order
        await tr.close()
        assert tr.close_reason is None

    asyncio.run(with_server(handler, body))


def test_a_frame_that_cannot_be_read_ends_the_connection_and_nothing_after_it_is_dispatched() -> None:
    good = frame(oa.ProtoOAVersionRes(version="before"))
    bad = proto.encode_frame(b"\x0a\xff")  # a field whose length runs past the envelope
    after = frame(oa.ProtoOAVersionRes(version="after"))

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(good + bad + after)  # one read: the frame after the bad one is there already
        await writer.drain()
        await reader.read()
        writer.close()

    async def body(port: int) -> None:
        seen: list[str] = []
        closes: list[BaseException | None] = []
        tr = Transport(config(port), on_event=lambda ptype, msg, cid: seen.append(msg.version),
                       on_close=closes.append)
        await tr.connect()
        reason = await asyncio.wait_for(tr.wait_closed(), 10)
        assert isinstance(reason, ConnectionClosed) and "read failed" in str(reason)
        assert seen == ["before"]
        assert closes == [reason] and not tr.is_open

    asyncio.run(with_server(handler, body))


def test_the_peer_closing_ends_the_connection_and_fails_the_requests_waiting() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(4)  # a request has begun: close under it
        writer.close()

    async def body(port: int) -> None:
        tr = Transport(config(port))
        await tr.connect()
        try:
            await tr.request(oa.ProtoOAVersionReq())
        except ConnectionClosed as exc:
            assert "closed by peer" in str(exc)
        else:
            raise AssertionError("a request answered by a closed connection")
        assert "closed by peer" in str(await tr.wait_closed())

    asyncio.run(with_server(handler, body))


def test_writes_held_while_the_socket_is_full_all_arrive_in_order() -> None:
    comment = "x" * 60_000
    count = 400  # 24 MB: past the loopback socket's buffer and the transport's high mark
    got: list[int] = []
    reading = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reading.wait()  # nothing read until the client has filled the socket
        for _ in range(count):
            body = await reader.readexactly(int.from_bytes(await reader.readexactly(4)))
            got.append(proto.unwrap(proto.decode_envelope(body)).volume)
        writer.close()

    async def body(port: int) -> None:
        tr = Transport(config(port))
        await tr.connect()
        sends = [asyncio.ensure_future(tr.send(oa.ProtoOANewOrderReq(
            ctidTraderAccountId=1, symbolId=1, orderType=1, tradeSide=1, volume=i + 1, comment=comment), f"o{i}"))
            for i in range(count)]
        await asyncio.sleep(0)
        while not all(s.done() for s in sends):  # some wait for the buffer to drain
            if not reading.is_set() and sum(s.done() for s in sends) < count:
                reading.set()
            await asyncio.sleep(0.01)
        for s in sends:
            s.result()
        await tr.close()

    asyncio.run(with_server(handler, body))
    assert got == list(range(1, count + 1))
