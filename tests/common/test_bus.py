"""Real ZeroMQ sockets (ipc) in one process: Lazy Pirate recovery, REP error replies, PUB/SUB tracking."""

import threading
import time

import msgpack
import pytest
import status_samples
import zmq

from common import bus, messages, wire
from common.text import clip


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)  # closes what a failed test left open (term would wait for it)


def test_requester_recovers_after_a_timeout(ctx, tmp_path):
    endpoint = f"ipc://{tmp_path}/rep"
    rep = ctx.socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    rep.bind(endpoint)
    req = bus.Requester(ctx, endpoint, "t", timeout_ms=200)
    with pytest.raises(bus.RequestTimeout):
        req.call("ping", messages.NoArgs())  # nobody answers the first request
    rep.recv()  # the server was slow: it now reads the lost request; its reply would be discarded
    rep.send(wire.encode_reply("late", {}))

    def answer():
        frames = rep.recv_multipart()
        r = wire.decode_request(frames)
        rep.send(wire.encode_reply(r.id, messages.Pong("rep", 1)))

    th = threading.Thread(target=answer)
    th.start()
    assert req.call("ping", messages.NoArgs()) == messages.Pong("rep", 1)  # the socket is not stuck
    th.join()
    assert req.resets == 1
    req.close()
    rep.close()


def test_responder_answers_every_bad_request_and_counts_it(ctx, tmp_path):
    endpoint = f"ipc://{tmp_path}/rep"
    errors = bus.WireErrors("t")

    def boom(_args):
        raise RuntimeError("handler bug")

    server = bus.Responder(ctx, endpoint, {"ping": lambda a: {"ok": 1}, "status": boom}, errors)
    client = _raw_client(ctx, endpoint)
    cases = [
        ([b"\xc1"], wire.BAD_MSGPACK),
        ([b"a", b"b"], wire.BAD_FRAMES),
        ([msgpack.packb({"v": 1, "op": "fly", "id": "1"})], wire.UNKNOWN_OP),
        ([msgpack.packb({"v": 1, "op": "step", "id": "1", "args": {}})], wire.BAD_BODY),
        ([msgpack.packb({"v": 1, "op": "stop", "id": "1", "args": {}})], wire.UNKNOWN_OP),  # not served here
        ([msgpack.packb({"v": 1, "op": "status", "id": "1", "args": {}})], wire.HANDLER_ERROR),
    ]
    for frames, code in cases:
        client.send_multipart(frames)
        deadline = time.monotonic() + 2
        while not client.poll(10):
            server.serve_ready()
            assert time.monotonic() < deadline
        reply = msgpack.unpackb(client.recv())
        assert reply["ok"] is False and reply["error"]["code"] == code, (frames, reply)
    # the op no service has and the op another service answers are both counted
    assert errors.counts == {wire.BAD_MSGPACK: 1, wire.BAD_FRAMES: 1, wire.UNKNOWN_OP: 2, wire.BAD_BODY: 1}
    client.close()
    server.close()


def test_pub_sub_detects_a_publisher_restart(ctx, tmp_path):
    endpoint = f"ipc://{tmp_path}/pub"
    sub = bus.Subscriber(ctx, [endpoint], ["hb."], bus.WireErrors("t"))
    hb = messages.Heartbeat("x", 1, 1, "RUNNING", 0.0, 0)

    def burst(epoch: int, n: int) -> list:
        pub = bus.Publisher(ctx, endpoint, "x", epoch)
        got: list = []
        deadline = time.monotonic() + 5
        while len(got) < n and time.monotonic() < deadline:  # slow joiner: publish until heard
            pub.publish("hb.x", hb)
            time.sleep(0.01)
            got += sub.drain()
        pub.close()
        return got

    first = burst(1, 3)
    second = burst(2, 3)
    assert first[0].seen.delivery.value == "first"
    assert [r.seen.delivery.value for r in first[1:3]] == ["in_order", "in_order"]
    assert second[0].seen.delivery.value == "new_epoch"
    assert second[0].envelope.epoch == 2
    sub.close()


def test_a_subscriber_drops_and_counts_a_hostile_frame_and_keeps_the_next_message_whole(ctx, tmp_path):
    endpoint = f"ipc://{tmp_path}/pub"
    raw_pub = ctx.socket(zmq.PUB)
    raw_pub.setsockopt(zmq.LINGER, 0)
    raw_pub.bind(endpoint)
    errors = bus.WireErrors("t")
    sub = bus.Subscriber(ctx, [endpoint], ["hb."], errors)
    hb = messages.Heartbeat("x", 1, 1, "RUNNING", 0.0, 0)
    deadline = time.monotonic() + 5
    got: list = []
    while not got and time.monotonic() < deadline:  # slow joiner: publish until heard
        raw_pub.send_multipart(wire.encode_pub("hb.x", "x", 1, 1, 1, hb))
        time.sleep(0.01)
        got = sub.drain()
    raw_pub.send_multipart([b"hb.x", b"extra", wire.encode_pub("hb.x", "x", 1, 2, 1, hb)[1]])  # three frames
    raw_pub.send_multipart([b"hb.x", b"\xc1"])  # not msgpack
    raw_pub.send_multipart(wire.encode_pub("hb.x", "x", 1, 2, 1, hb))
    later: list = []
    while not later and time.monotonic() < deadline:
        later = sub.drain()
        time.sleep(0.01)
    assert [(r.envelope.seq, r.envelope.body) for r in later] == [(2, hb)]
    assert errors.counts == {wire.BAD_FRAMES: 1, wire.BAD_MSGPACK: 1}
    sub.close()
    raw_pub.close()


def test_pub_hwm_is_deliberate(ctx, tmp_path):
    pub = bus.Publisher(ctx, f"ipc://{tmp_path}/p", "x", 1)
    assert pub.sock.getsockopt(zmq.SNDHWM) == bus.PUB_HWM
    pub.close()


def _send(req: bus.Requester, op: str) -> str:
    return req.send(op, messages.NoArgs(), 2000)


def _reply(req: bus.Requester, server: bus.Responder, timeout_s: float = 2.0) -> wire.Reply:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        server.serve_ready()
        server.flush(time.monotonic())
        reply = req.take_reply()
        if reply is not None:
            return reply
        time.sleep(0.005)
    raise AssertionError("no reply")


def test_a_concurrent_responder_answers_others_while_a_deferred_one_waits(ctx, tmp_path):
    import concurrent.futures

    endpoint = f"ipc://{tmp_path}/router"
    slow: concurrent.futures.Future = concurrent.futures.Future()
    finished = []

    def finish(f):
        finished.append(f.result())
        return messages.ProcessStatus(**status_samples.common_part("t", pid=f.result()))

    handlers = {"status": lambda _a: bus.Deferred(slow, finish), "ping": lambda _a: messages.Pong("t", 1)}
    server = bus.Responder(ctx, endpoint, handlers, bus.WireErrors("t"), concurrent=True)
    a, b = bus.Requester(ctx, endpoint, "a"), bus.Requester(ctx, endpoint, "b")
    _send(a, "status")
    time.sleep(0.05)
    server.serve_ready()
    assert server.waiting and not finished
    _send(b, "ping")
    assert _reply(b, server).result == messages.Pong("t", 1)  # not held up by the slow one
    assert a.take_reply() is None
    slow.set_result(7)
    reply = _reply(a, server)
    assert reply.ok and reply.result.pid == 7 and finished == [7] and not server.waiting
    for r in (a, b):
        r.close()
    server.close()


def test_a_deferred_answer_past_its_deadline_or_at_stop_is_a_clear_error(ctx, tmp_path):
    import concurrent.futures

    endpoint = f"ipc://{tmp_path}/router"
    futures: list[concurrent.futures.Future] = []

    def never(_a):
        futures.append(concurrent.futures.Future())
        deadline = time.monotonic() + 0.1 if len(futures) == 1 else None
        return bus.Deferred(futures[-1], lambda f: f.result(), deadline, "never")

    server = bus.Responder(ctx, endpoint, {"ping": never}, bus.WireErrors("t"), concurrent=True)
    a, b = bus.Requester(ctx, endpoint, "a"), bus.Requester(ctx, endpoint, "b")
    _send(a, "ping")
    reply = _reply(a, server)
    assert not reply.ok and reply.error_code == "timeout" and "never" in reply.error_message
    assert futures[0].cancelled()
    _send(b, "ping")
    time.sleep(0.05)
    server.serve_ready()
    server.abandon("stopping", "the service is stopping")
    reply = _reply(b, server)
    assert not reply.ok and reply.error_code == "stopping"
    for r in (a, b):
        r.close()
    server.close()


def test_a_plain_rep_responder_refuses_a_deferred_answer_clearly(ctx, tmp_path):
    import concurrent.futures

    endpoint = f"ipc://{tmp_path}/rep"
    handlers = {"ping": lambda _a: bus.Deferred(concurrent.futures.Future(), lambda f: f.result())}
    server = bus.Responder(ctx, endpoint, handlers, bus.WireErrors("t"))
    req = bus.Requester(ctx, endpoint, "a")
    _send(req, "ping")
    reply = _reply(req, server)
    assert not reply.ok and reply.error_code == wire.HANDLER_ERROR and "concurrent" in reply.error_message
    req.close()
    server.close()


def test_publish_many_sends_the_bytes_publish_sends_with_one_seq_per_topic(ctx, tmp_path):
    endpoint = f"ipc://{tmp_path}/pub"
    pub = bus.Publisher(ctx, endpoint, "preditor", 7)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVTIMEO, 5000)
    sub.connect(endpoint)
    hb = messages.Heartbeat("preditor", 1, 1, "RUNNING", 0.0, 0)
    while True:  # slow joiner: publish until heard
        pub.publish("hb.preditor", hb)
        try:
            sub.recv_multipart(zmq.NOBLOCK)
            break
        except zmq.Again:
            time.sleep(0.01)
    seq0 = pub.seqs["hb.preditor"]
    eur = messages.Signal("EURUSD", 3600, 1.1, 1, 1, 1, 0, 0.1 + 0.2, None, False)
    gbp = messages.Signal("GBPUSD", 3600, 1.3, 2, -1, 1, 1, -0.5, 1, True)
    sent = [("signal.EURUSD", eur), ("signal.GBPUSD", gbp), ("hb.preditor", hb), ("signal.EURUSD", eur)]
    pub.publish_many(sent)
    pub.publish("signal.EURUSD", eur)
    got = []
    while len(got) < 5:
        frames = sub.recv_multipart()
        if frames[0] != b"hb.preditor" or len(got) >= 2:  # drop the joiner's extra heartbeats
            got.append(frames)
    envelopes = [wire.decode_pub(f) for f in got]
    assert [(e.topic, e.seq, e.body) for e in envelopes] == \
        [("signal.EURUSD", 1, eur), ("signal.GBPUSD", 1, gbp), ("hb.preditor", seq0 + 1, hb), ("signal.EURUSD", 2, eur),
         ("signal.EURUSD", 3, eur)]
    assert len({e.ts for e in envelopes[:4]}) == 1  # one timestamp for the group
    for frames, e in zip(got, envelopes, strict=True):
        assert frames == wire.encode_pub(e.topic, "preditor", 7, e.seq, e.ts, e.body)
    sub.close()
    pub.close()


# ---- limits (issue 16) -------------------------------------------------------------------------

def _raw_client(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    """A plain REQ socket (no bus.Requester), to send frames the bus would not."""
    client = ctx.socket(zmq.REQ)
    client.setsockopt(zmq.LINGER, 0)
    client.connect(endpoint)
    return client


def _serve_until_answered(server: bus.Responder, client: zmq.Socket) -> dict:
    while not client.poll(10):
        server.serve_ready()
    return msgpack.unpackb(client.recv())


def test_every_socket_the_bus_makes_has_the_message_size_limit(ctx, tmp_path):
    errors = bus.WireErrors("t")
    parts = [
        bus.Publisher(ctx, f"ipc://{tmp_path}/pub", "t", 1),
        bus.Subscriber(ctx, [f"ipc://{tmp_path}/pub"], ["x"], errors),
        bus.Requester(ctx, f"ipc://{tmp_path}/rep", "t"),
        bus.Responder(ctx, f"ipc://{tmp_path}/rep", {}, errors),
        bus.Responder(ctx, f"ipc://{tmp_path}/router", {}, errors, concurrent=True),
    ]
    req = parts[2]
    req.reset()  # a reopened REQ too
    assert [p.sock.getsockopt(zmq.MAXMSGSIZE) for p in parts] == [bus.MAX_MESSAGE_BYTES] * 5
    for p in parts:
        p.close()


def test_a_frame_over_the_socket_limit_is_dropped_unread_and_the_responder_serves_on(ctx, tmp_path):
    endpoint = f"ipc://{tmp_path}/rep"
    errors = bus.WireErrors("t")
    server = bus.Responder(ctx, endpoint, {"ping": lambda a: messages.Pong("rep", 1)}, errors)
    hostile = ctx.socket(zmq.DEALER)
    hostile.setsockopt(zmq.LINGER, 0)
    monitor = hostile.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    hostile.connect(endpoint)
    hostile.send_multipart([b"", b"\x00" * (bus.MAX_MESSAGE_BYTES + 1)])
    assert monitor.recv_multipart()  # the server cut the connection at the frame's header
    client = _raw_client(ctx, endpoint)
    client.send(wire.encode_request("ping", "c-1", messages.NoArgs()))
    reply = _serve_until_answered(server, client)
    assert reply["ok"] is True and reply["id"] == "c-1"
    assert server.served == 1 and errors.counts == {}  # the huge frame never reached the loop
    hostile.disable_monitor()
    for s in (monitor, hostile, client):
        s.close()
    server.close()


def test_a_request_over_the_request_limit_is_answered_and_counted(ctx, tmp_path):
    endpoint = f"ipc://{tmp_path}/rep"
    errors = bus.WireErrors("t")
    server = bus.Responder(ctx, endpoint, {"ping": lambda a: messages.Pong("rep", 1)}, errors)
    client = _raw_client(ctx, endpoint)
    big = b"\x84" + b"".join(msgpack.packb(x) for x in ("v", 1, "op", "ping", "id", "b-1", "args")) \
        + msgpack.packb("z" * 20_000_000)
    client.send(big)
    reply = _serve_until_answered(server, client)
    assert reply["ok"] is False and reply["error"]["code"] == wire.TOO_LARGE
    assert f"request of {len(big)} bytes, over the limit" in reply["error"]["message"]
    client.send(wire.encode_request("ping", "c-2", messages.NoArgs()))
    assert _serve_until_answered(server, client)["ok"] is True
    assert errors.counts == {wire.TOO_LARGE: 1}
    client.close()
    server.close()


def test_a_long_op_name_is_clipped_in_the_reply_and_the_log(ctx, tmp_path, caplog):
    endpoint = f"ipc://{tmp_path}/rep"
    errors = bus.WireErrors("t")
    server = bus.Responder(ctx, endpoint, {}, errors)
    client = _raw_client(ctx, endpoint)
    client.send(msgpack.packb({"v": 1, "op": "o" * 100_000, "id": "n-1", "args": {}}))
    with caplog.at_level("WARNING", logger="oracle.bus"):
        reply = _serve_until_answered(server, client)
    message = reply["error"]["message"]
    assert reply["id"] == "n-1" and reply["error"]["code"] == wire.UNKNOWN_OP
    assert message == f"unknown op '{clip('o' * 100_000, wire.QUOTE_CHARS)}'" and message.endswith("...[100000 chars]'")
    [line] = [r.getMessage() for r in caplog.records if r.name == "oracle.bus"]
    assert message in line and len(line) < 300
    client.close()
    server.close()
