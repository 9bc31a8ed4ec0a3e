"""A flight's orders from the executor's send to their arrival at the connector, its order lines opened ahead or not.

    python bench/executor_flight_bench.py [--orders 21] [--repeats 20]

Each repeat is a new executor process's state (a new `Executor`, executor.load run, `--orders` symbols enabled and
modelled) sending one flight of `--orders` openings the way `_execute` does (`_group`, then the group's first
`pump`), to a stand-in connector in a forked process (a concurrent Responder, as the connector's ROUTER, stamping
each order's arrival with CLOCK_MONOTONIC, shared by the processes, and answering it at once); then a second
flight of the same size from the same executor (its lines back in the pool). Printed, p50 and p90 over the repeats:
the main thread's CPU for `_group` + `pump` and the time from the flight's start to its first and last order in at
the connector. Run on the old and the new code, alternated: the first flight is the one a flight larger than any
before it meets (the lines it lacks opened on its path before; opened at executor.load now).
"""
import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import zmq  # noqa: E402

from bench.executor_decide_bench import SYMBOLS, make_home  # noqa: E402
from common import bus, config, messages  # noqa: E402
from services.executor import service  # noqa: E402
from services.executor import symbols_config as sc  # noqa: E402


class _Anyone:
    def __contains__(self, _role: object) -> bool:
        return True


def connector(cfg: config.Config, q: mp.Queue, stop: mp.Event) -> None:
    """The forked stand-in: order_open answered at once; the arrival times of each flight's orders put on `q`."""
    ctx = zmq.Context()
    arrived: list[float] = []

    def order_open(a: messages.OrderOpenArgs) -> messages.OrderResult:
        arrived.append(time.monotonic())
        return messages.OrderResult(True, a.client_order_id, ticket=len(arrived), price=1.1)

    server = bus.Responder(ctx, cfg.endpoint("connector", "rep"), {messages.OP_ORDER_OPEN.name: order_open},
                           bus.WireErrors("connector"), concurrent=True)
    server.permits = dict.fromkeys(server.permits, _Anyone())
    server.self_ops = frozenset()
    while not stop.is_set():
        if server.sock.poll(5):
            server.serve_ready()
        server.flush(time.monotonic())
        if arrived and time.monotonic() - arrived[-1] > 0.2:
            q.put(arrived[:])
            arrived.clear()
    server.close()
    ctx.term()


def flight(ex: service.Executor, symbols: list[str], q: mp.Queue, tag: str) -> tuple[float, float, float]:
    requests = [(messages.OP_ORDER_OPEN.name, messages.OrderOpenArgs(s, 1, 0.01, f"{tag}-{s}"), f"{tag}-{s}")
                for s in symbols]
    t0 = time.monotonic()
    c0 = time.thread_time()
    group = ex._group(requests)
    group.pump(time.monotonic())
    cpu = time.thread_time() - c0
    while not group.pump(time.monotonic()):
        ex._poll(group.sockets())
    ex._release(group)
    arrived = q.get(timeout=10)
    return cpu * 1000, (min(arrived) - t0) * 1000, (max(arrived) - t0) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=21)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    symbols = SYMBOLS[: args.orders]
    fork = mp.get_context("fork")
    rows: dict[str, list[tuple[float, float, float]]] = {"first flight": [], "second flight": []}
    with tempfile.TemporaryDirectory(prefix="exflight") as tmp:
        root = Path(tmp)
        make_home(root, symbols)
        cfg = config.load(env={"ORACLE_HOME": str(root)})
        cfg.path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
        q, stop = fork.Queue(), fork.Event()
        child = fork.Process(target=connector, args=(cfg, q, stop))
        child.start()
        time.sleep(0.5)
        for r in range(args.repeats):
            ex = service.Executor(cfg)
            ex._next_hb = float("inf")  # no PUB socket here to beat on
            assert ex.on_step("executor.load", {})
            # as if each symbol had its model (the bench's home has EURUSD's only)
            ex.modelled, ex.config = set(symbols), sc.ensure_symbols(ex.config, set(symbols))[0]
            opened = getattr(ex, "_open_order_lines", None)
            if opened is not None:  # what executor.load does with these symbols modelled
                opened()
            time.sleep(0.2)  # a bar's time after the boot
            rows["first flight"].append(flight(ex, symbols, q, f"r{r}a"))
            time.sleep(0.05)
            rows["second flight"].append(flight(ex, symbols, q, f"r{r}b"))
            ex.on_stop()
            ex.ctx.destroy(linger=0)
        stop.set()
        child.join()
    print(f"a flight of {args.orders} orders, {args.repeats} repeats (p50 / p90, ms)")
    for name, xs in rows.items():
        cols = []
        for i, label in enumerate(("_group + pump CPU", "first order in", "last order in")):
            v = sorted(x[i] for x in xs)
            cols.append(f"{label} {statistics.median(v):.3f} / {v[int(0.9 * (len(v) - 1))]:.3f}")
        print(f"  {name}: " + ", ".join(cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
