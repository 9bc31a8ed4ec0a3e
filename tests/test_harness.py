"""The test harness's TCP ports: each pytest-xdist worker has its own slice below the kernel's ephemeral range, and
a port is never handed out twice nor while something is bound to it."""

import socket
from pathlib import Path

import harness


def test_the_workers_slices_are_disjoint_and_below_the_ephemeral_range(monkeypatch):
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    slices = []
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        slices.append(set(harness._port_slice()))
    assert not slices[0] & slices[1]
    assert min(slices[0] | slices[1]) >= harness.PORTS_LOW and max(slices[0] | slices[1]) < ephemeral_low


def test_a_port_is_handed_out_once_and_never_while_bound(monkeypatch):
    monkeypatch.setattr(harness, "_ports", [])
    first = harness.free_port()
    with socket.socket() as held:
        held.bind(("127.0.0.1", first + 1))  # the next one in the walk is taken meanwhile
        held.listen()
        ports = [harness.free_port() for _ in range(20)]
    assert first not in ports and first + 1 not in ports and len(set(ports)) == 20
    assert all(p in harness._port_slice() for p in [first, *ports])
