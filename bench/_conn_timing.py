"""Run the connector with thread-CPU accumulators around chosen functions (bench/connector_cpu_bench.py --timing):
inclusive thread_time per function and call counts, written as JSON to argv[1] at exit."""

import functools
import inspect
import json
import sys
import threading
import time

out = sys.argv[1]
acc: dict[str, list[float]] = {}
lock = threading.Lock()
local = threading.local()


def wrap(owner, attr, name):
    fn = getattr(owner, attr)
    if inspect.iscoroutinefunction(fn):
        return
    static = isinstance(inspect.getattr_static(owner, attr), staticmethod)

    @functools.wraps(fn)
    def timed(*a, **k):
        depth = getattr(local, "depth", {})
        local.depth = depth
        if depth.get(name):
            return fn(*a, **k)
        depth[name] = 1
        t0 = time.thread_time()
        try:
            return fn(*a, **k)
        finally:
            dt = time.thread_time() - t0
            depth[name] = 0
            with lock:
                e = acc.setdefault(name, [0.0, 0])
                e[0] += dt
                e[1] += 1
    setattr(owner, attr, staticmethod(timed) if static else timed)


from common import bus  # noqa: E402
from services.connector import bridge, service  # noqa: E402
from services.connector.ctrader import data, execution, spots, transport  # noqa: E402

C = service.Connector
for attr in ("_turn", "_on_wake", "on_tick", "_commit_journal", "_commit_state", "_take_events", "_say_held",
             "_settle_open", "_settle_close",
             "_drive_outbox", "_heartbeat", "beat_if_due"):
    if hasattr(C, attr):
        wrap(C, attr, "loop." + attr)
for attr in ("serve_ready", "flush"):
    wrap(bus.Responder, attr, "loop.Responder." + attr)
wrap(bus.Publisher, "publish_many", "loop.publish_many")
wrap(bus.Publisher, "publish", "loop.publish")
B = bridge.Bridge
for attr in ("answered_now", "answer", "release", "woken", "_send", "take_events", "wake", "_wake_now"):
    wrap(B, attr, "bridge." + attr)
wrap(bridge.BrokerLoop, "step", "broker.step")
wrap(transport.Transport, "_dispatch", "broker.dispatch")
# the frame reader the adapter's transport is given (client.py)
_READER = "read_frame_adapter" if hasattr(spots, "read_frame_adapter") else "read_frame_lean"
_lean = getattr(spots, _READER)


def read_frame_timed(body):
    t0 = time.thread_time()
    r = _lean(body)
    dt = time.thread_time() - t0
    name = "broker.read_frame." + type(r[1]).__name__
    with lock:
        e = acc.setdefault(name, [0.0, 0])
        e[0] += dt
        e[1] += 1
    return r


setattr(spots, _READER, read_frame_timed)
wrap(data.MarketData, "on_spot", "broker.on_spot")
wrap(execution.Execution, "on_execution", "broker.on_execution")
wrap(transport.Transport, "_send", "broker.transport._send")

snaps = 0


def snapshot(*_):
    global snaps
    with lock:
        now = {k: list(v) for k, v in acc.items()}
    now["loop.TOTAL"] = [time.thread_time() - t0, 1]
    snaps += 1
    with open(f"{out}.{snaps}", "w") as f:
        json.dump(now, f)


import signal  # noqa: E402

signal.signal(signal.SIGUSR1, snapshot)
t0 = time.thread_time()
try:
    service.main([])
finally:
    acc["loop.TOTAL"] = [time.thread_time() - t0, 1]
    with open(out, "w") as f:
        json.dump(acc, f)
