"""The slowest bars of a pipeline bench run, stage by stage, from the services' trace files (common/trace.py).

    .venv/bin/python bench/bar_trace.py DIR [--slowest 5]   # DIR: a run's trace files (pipeline_bench.py --slowest)

A bar is the connector's first ``bars_published`` mark after a pause (0.3 s); its time is the last ``order_sent``
mark within 0.5 s after it (the connector's clock, as its ``bar_to_order_ms``, from the close's first publication).
For the slowest bars and the median one: when each stage was reached (ms after the bars were published), and
everything else the processes marked meanwhile (their fdatasyncs, garbage collections, loop turns over 1 ms, SQLite
checkpoints, the connector's release of a flight's orders and its waits for the broker's rate limit), so what held
the slow bars shows beside its stage. Last, the order path's fdatasyncs (the executor's intent, the connector's
journal and state) with and without another process's fdatasync overlapping them, and the connector's release
steps: wall time against its thread's CPU.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from pathlib import Path

GAP_S = 0.3  # a pause between two closes' bars
WINDOW_S = 0.5  # a close's orders are sent within this
STAGES = (  # (label, mark, first or last)
    ("signals", "preditor.signals_published", min), ("positions asked", "executor.positions_asked", min),
    ("positions in", "executor.positions_in", min), ("intent durable", "executor.intent_durable", min),
    ("orders out", "executor.orders_out", min), ("order in, first", "connector.order_in", min),
    ("order in, last", "connector.order_in", max), ("sent, first", "connector.order_sent", min),
    ("sent, last", "connector.order_sent", max),
)
QUIET = {"connector.order_in", "connector.order_sent", "connector.bars_published"}
BATCH_GAP_S = 0.0007  # two orders written further apart than this: seen as two batches

Event = tuple[float, str, str, str]  # time, process, stage, detail


def read(directory: Path) -> list[Event]:
    events: list[Event] = []
    for path in directory.glob("*.trace"):
        process = path.name.split(".")[0]
        for line in path.read_text(errors="replace").splitlines():
            t, _, rest = line.partition(" ")
            stage, _, detail = rest.partition(" ")
            try:
                events.append((float(t), process, stage, detail))
            except ValueError:
                continue  # a line cut by the process's end
    return sorted(events)


def bars(events: list[Event]) -> list[dict]:
    starts: list[float] = []
    for t, _p, stage, _d in events:
        if stage == "connector.bars_published" and (not starts or t - starts[-1] > GAP_S):
            starts.append(t)
    out = []
    for t0 in starts:
        window = [e for e in events if t0 <= e[0] < t0 + WINDOW_S]
        sent = [e[0] for e in window if e[2] == "connector.order_sent"]
        if not sent:
            continue
        stages = {}
        for label, stage, pick in STAGES:
            ts = [e[0] for e in window if e[2] == stage]
            stages[label] = 1000 * (pick(ts) - t0) if ts else None
        out.append({"t0": t0, "ms": 1000 * (max(sent) - t0), "orders": len(sent), "stages": stages})
    return sorted(out, key=lambda b: b["ms"])


def _ms(detail: str) -> float:
    return float(detail.split("ms")[0])


def bar_lines(bar: dict, events: list[Event]) -> list[str]:
    t0, end = bar["t0"], bar["t0"] + bar["ms"] / 1000
    stages = ", ".join(f"{k} {v:.1f}" for k, v in bar["stages"].items() if v is not None)
    lines = [f"  bar close -> last order sent {bar['ms']:.1f} ms ({bar['orders']} orders): {stages}"]
    for t, process, stage, detail in events:
        if t0 <= t <= end and stage not in QUIET:
            lines.append(f"    {1000 * (t - t0):7.2f}  {process:12s} {stage} {detail}")
    return lines


def order_path_syncs(events: list[Event]) -> list[str]:
    """The executor's and the connector's fdatasyncs, alone or overlapped by another process's (ms)."""
    syncs = [(t - _ms(d) / 1000, t, p) for t, p, s, d in events if s == "fdatasync"]
    lines = []
    for process in ("executor", "connector"):
        alone, shared = [], []
        for start, end, p in syncs:
            if p == process:
                other = any(q != p and s2 < end and e2 > start for s2, e2, q in syncs)
                (shared if other else alone).append(1000 * (end - start))
        for label, xs in (("alone", alone), ("beside another process's", shared)):
            if xs:
                xs.sort()
                lines.append(f"  {process} fdatasync {label}: {len(xs)}, p50 {statistics.median(xs):.2f} ms, "
                             f"p90 {xs[int(0.9 * (len(xs) - 1))]:.2f} ms, max {xs[-1]:.2f} ms")
    return lines


def release_steps(events: list[Event]) -> list[str]:
    """The connector's release of a flight's orders (one step of its broker loop: each order written to the broker's
    connection): its wall time against its thread's CPU (the rest: the thread off the CPU, waiting for a core), and
    the steps whose writes have a gap over `BATCH_GAP_S` (the orders seen to leave in two or more batches)."""
    connector = [e for e in events if e[1] == "connector"]
    walls, cpus, split = [], [], 0
    sends: list[float] = []
    start = None
    for t, _p, stage, detail in connector:
        if stage == "connector.release_from":
            start, sends = t, []
        elif stage == "connector.order_sent" and start is not None:
            sends.append(t)
        elif stage == "connector.release_done" and start is not None:
            walls.append(1000 * (t - start))
            cpus.append(_ms(detail.split("cpu ")[1]))
            split += any(b - a > BATCH_GAP_S for a, b in itertools.pairwise(sends))
            start = None
    if not walls:
        return []
    walls.sort()
    cpus.sort()
    return [f"  the connector's release steps: {len(walls)}, wall p50 {statistics.median(walls):.2f} ms, p90 "
            f"{walls[int(0.9 * (len(walls) - 1))]:.2f} ms; its thread's CPU p50 {statistics.median(cpus):.2f} ms, "
            f"p90 {cpus[int(0.9 * (len(cpus) - 1))]:.2f} ms; with a gap over {BATCH_GAP_S * 1000:.1f} ms between two "
            f"orders written: {split}"]


def report(directory: Path, slowest: int) -> list[str]:
    events = read(directory)
    found = bars(events)
    if not found:
        return [f"no bar with orders in the traces of {directory}"]
    ms = [b["ms"] for b in found]
    lines = [f"{len(found)} bars with orders, close -> last order sent p50 {statistics.median(ms):.1f} ms, max "
             f"{ms[-1]:.1f} ms; the {min(slowest, len(found))} slowest, then the median one (ms after the close's "
             "bars were published):"]
    for bar in found[::-1][:slowest]:
        lines += bar_lines(bar, events)
    lines += ["  the median bar:", *bar_lines(found[len(found) // 2], events)]
    return lines + ["the order path's fdatasyncs (another process's fdatasync overlapping, or not):",
                    *order_path_syncs(events), *release_steps(events)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path)
    p.add_argument("--slowest", type=int, default=5)
    args = p.parse_args()
    print("\n".join(report(args.dir, args.slowest)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
