"""The runtime's gathering of a burst of messages (``sub_gather_ms``): once the SUB socket has delivered, it is not
polled (the loop is not woken message by message) until the gathering ends, then read whole and polled again; and
the loop's sleep ends at the end of the outbox's linger, and a pass once its records are quiet sends them (no
short poll needed)."""

import pytest
import zmq
from harness import Home

from common import bus, messages, runtime


class Gathering(runtime.Service):
    name = "paper"
    sub_gather_ms = 10.0
    idle_poll_ms = None

    def __init__(self, cfg, dry_run: bool = False):
        super().__init__(cfg, dry_run)
        self.heard: list[str] = []

    def on_message(self, received: bus.Received) -> None:
        self.heard.append(received.envelope.body.message)


def alert(text: str) -> messages.Alert:
    return messages.Alert("test", "info", text, "test", {})


@pytest.fixture
def service(tmp_path):
    svc = Gathering(Home(tmp_path).config())
    yield svc
    if svc._spool is not None:
        import os
        os.close(svc._spool)
    for part in (svc.sub, svc.pub):
        if part is not None:
            part.close()
    svc.ctx.term()


def test_a_burst_is_read_in_one_pass_at_the_end_of_its_gathering(service):
    pub = service.pub = bus.Publisher(service.ctx, "inproc://gather", "preditor", 1)
    service.sub = bus.Subscriber(service.ctx, ["inproc://gather"], ["alert."], service.errors)
    poller = zmq.Poller()
    poller.register(service.sub.sock, zmq.POLLIN)
    sent = 0
    while not poller.poll(100):  # the subscription reaches the publisher: the first message of the burst
        pub.publish("alert.test", alert(f"m{sent}"))
        sent += 1
        assert sent < 100, "the subscriber hears nothing"
    service._next_hb = 1e9  # no heartbeat due: the gathering's end is the next deadline
    service._read_sub(poller, now=100.0)
    assert service.heard == [f"m{i}" for i in range(sent)]
    assert service.sub.sock not in dict(poller.sockets)  # not polled while the burst gathers
    assert service._due_ms(100.0) in (10, 11)  # the loop wakes at the gathering's end (rounded up)
    for i in range(sent, sent + 3):
        pub.publish("alert.test", alert(f"m{i}"))
    assert service.sub.sock.poll(5000)
    assert poller.poll(0) == []  # arrived, yet no wake
    service._read_sub(poller, now=100.010)
    assert service.heard == [f"m{i}" for i in range(sent + 3)]
    assert service.sub.sock in dict(poller.sockets)  # polled again: the next message starts another gathering
    assert service._due_ms(100.010) > 1000


def test_the_loop_sleeps_until_the_outbox_may_send_its_gathered_records(service):
    service._next_hb = 1e9
    service.outbox.quiet_s, service.outbox.linger_s = 0.010, 0.100
    service.outbox.add("events", {"id": "e0"}, now=50.0)
    assert service._due_ms(50.0) in (100, 101)  # woken at the linger's end (rounded up) ...
    service._drive_outbox(50.010)  # ... a pass after 10 ms of quiet sends them
    assert service._store is not None and service._store.pending is not None
    assert service.outbox.inflight == ["e0"]
    service._store.reset()
    service.outbox.on_failure()
    service.outbox.add("events", {"id": "e1"}, now=50.095)
    assert service._due_ms(50.095) in (100, 101)  # e0 waited already: the linger of e1, gathered since
    service._store_retry_at = 60.0  # persistence refused: the retry time rules
    assert service._due_ms(50.095) in (9905, 9906)
    service._store.close()


def test_a_burst_said_whole_by_gather_more_leaves_the_socket_polled(service):
    """``gather_more`` False after a drain (the service has what the burst was to bring): no gathering, so no wake
    at its end for nothing; the next message wakes the loop at once. Before it says so, the burst is gathered."""
    pub = service.pub = bus.Publisher(service.ctx, "inproc://whole", "preditor", 1)
    service.sub = bus.Subscriber(service.ctx, ["inproc://whole"], ["alert."], service.errors)
    poller = zmq.Poller()
    poller.register(service.sub.sock, zmq.POLLIN)
    while not poller.poll(100):  # the subscription reaches the publisher
        pub.publish("alert.test", alert("probe"))
    service.sub.drain()
    service.gather_more = lambda: len(service.heard) < 3  # the burst is three messages
    service._next_hb = 1e9
    pub.publish("alert.test", alert("m0"))  # inproc: in the subscriber's pipe once sent
    service._read_sub(poller, now=100.0)
    assert service.heard == ["m0"] and service.sub.sock not in dict(poller.sockets)  # gathered: more to come
    pub.publish("alert.test", alert("m1"))
    pub.publish("alert.test", alert("m2"))
    service._read_sub(poller, now=100.010)  # the gathering's end
    assert service.heard == ["m0", "m1", "m2"] and service.sub.sock in dict(poller.sockets)
    for i in range(3, 6):  # the next burst, whole in one drain
        pub.publish("alert.test", alert(f"m{i}"))
    service.gather_more = lambda: len(service.heard) < 6
    service._read_sub(poller, now=101.0)
    assert service.heard == [f"m{i}" for i in range(6)]
    assert service.sub.sock in dict(poller.sockets)  # whole: still polled, no gathering's end to wake for
    assert service._sub_due is None and service._due_ms(101.0) > 1000


def test_with_gather_first_a_bursts_first_message_waits_for_the_gatherings_end_too(service):
    """``sub_gather_first``: the message that wakes the loop is not read then; the socket is left unpolled and the
    whole burst is read at the gathering's end (after the burst's moment), then polled again."""
    service.sub_gather_first = True
    pub = service.pub = bus.Publisher(service.ctx, "inproc://first", "preditor", 1)
    service.sub = bus.Subscriber(service.ctx, ["inproc://first"], ["alert."], service.errors)
    poller = zmq.Poller()
    poller.register(service.sub.sock, zmq.POLLIN)
    while not poller.poll(100):  # the subscription reaches the publisher
        pub.publish("alert.test", alert("probe"))
    service.sub.drain()
    service._next_hb = 1e9
    pub.publish("alert.test", alert("m0"))
    assert poller.poll(5000)  # the first message wakes the loop ...
    service._read_sub(poller, now=100.0)
    assert service.heard == [] and service.sub.sock not in dict(poller.sockets)  # ... which only notes it
    assert service._due_ms(100.0) in (10, 11)
    pub.publish("alert.test", alert("m1"))
    service._read_sub(poller, now=100.010)  # the gathering's end: the whole burst
    assert service.heard == ["m0", "m1"] and service.sub.sock in dict(poller.sockets)
    pub.publish("alert.test", alert("m2"))  # the next burst starts another gathering, unread
    service._read_sub(poller, now=101.0)
    assert service.heard == ["m0", "m1"] and service._sub_due is not None
