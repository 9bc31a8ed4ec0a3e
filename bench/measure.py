"""What the benches share: percentiles, a process's CPU time (to the ns where the kernel gives it), the idle cost
taken off a per-bar figure, the verdict of an acceptance line (imported by bench/pipeline_bench.py and
bench/preditor_bench.py), and in-process benches run in several checkouts in turn (``alternate_checkouts``)."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil


def pct(xs: list[float], q: float) -> float:
    """The q-th percentile (nearest rank); NaN for no samples."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))] if xs else float("nan")


@dataclass(frozen=True)
class CpuSample:
    """A process's CPU time so far, two ways: the kernel's runtime of its live threads (ns resolution,
    /proc/PID/task/*/schedstat) and their ids, and psutil's user + system (10 ms ticks, dead threads included)."""

    runtime_s: float
    threads: frozenset[int]
    ticks_s: float


def cpu_sample(pid: int) -> CpuSample | None:
    """None if the process is gone."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    runtime, threads = 0.0, set()
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                runtime += int((task / "schedstat").read_text().split()[0]) / 1e9
            except (OSError, ValueError, IndexError):
                return CpuSample(float("nan"), frozenset(), t.user + t.system)
            threads.add(int(task.name))
    except OSError:
        return CpuSample(float("nan"), frozenset(), t.user + t.system)
    return CpuSample(runtime, frozenset(threads), t.user + t.system)


def cpu_used_s(before: CpuSample | None, after: CpuSample | None) -> float:
    """CPU seconds between two samples of one process: the runtime (ns resolution) when the same threads were there
    both times (a thread that ended took its runtime with it), else the ticks; NaN if a sample is missing."""
    if before is None or after is None:
        return float("nan")
    if before.threads == after.threads and not math.isnan(before.runtime_s) and not math.isnan(after.runtime_s):
        return after.runtime_s - before.runtime_s
    return after.ticks_s - before.ticks_s


def net_ms(gross_ms: float, idle_ms_per_s: float, period_s: float) -> float:
    """A per-bar CPU figure without what the process spends idle (heartbeats, timers) over the bar's period. At
    least 0: a process whose bars cost less than its idle estimate (the orchestrator, which does nothing per bar)
    counts 0 for them, never a negative figure that a sum of processes would take off the others'."""
    return max(0.0, gross_ms - idle_ms_per_s * period_s)


def verdict(value: float | None, target: float, at_most: bool = True) -> str:
    """PASS / FAIL of ``value`` against ``target`` (at most, or at least); ``-`` when it was not measured."""
    if value is None or math.isnan(value):
        return "-"
    return "PASS" if (value <= target if at_most else value >= target) else "FAIL"


def alternate_checkouts(script: str, repos: list[Path], repeat: int, one_args: list[str]) -> dict[Path, list[dict]]:
    """``script --one *one_args`` run in each checkout of ``repos`` in turn, ``repeat`` rounds, each run its own
    process with that checkout's code (``PYTHONPATH``): the JSON each printed, by checkout, in run order."""
    got: dict[Path, list[dict]] = {r: [] for r in repos}
    for _ in range(repeat):
        for repo in repos:
            out = subprocess.run([sys.executable, str(Path(script).resolve()), "--one", *one_args], cwd=repo,
                                 env={"PYTHONPATH": str(repo)}, capture_output=True, text=True, check=True)
            got[repo].append(json.loads(out.stdout))
    return got


def print_medians(got: dict[Path, list[dict]], key: str, unit: str, digits: int,
                  tail: Callable[[dict], str]) -> None:
    """One line a checkout of ``alternate_checkouts``' runs: the median of ``key`` (and each run's), ``tail`` of its
    first run."""
    for repo, runs in got.items():
        xs = [r[key] for r in runs]
        each = ", ".join(f"{x:.{digits}f}" for x in xs)
        print(f"{repo}: {statistics.median(xs):.{digits}f} us {unit} (runs {each}); {tail(runs[0])}")
