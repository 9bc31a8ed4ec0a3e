"""Stage timestamps for the pipeline bench's breakdown of its slowest bars (bench/pipeline_bench.py --slowest).

With ``BAR_TRACE_DIR`` set in its environment, a process appends one line per mark to ``<dir>/<service>.<pid>.trace``:
CLOCK_MONOTONIC (one clock for every process of the host), the stage, a detail; its garbage collections of the older
generations (or longer than half a millisecond) are marked too. Unset (always, outside that bench), ``mark`` does
nothing and ``ON`` is False.
"""

from __future__ import annotations

import gc
import os
import sys
import time

ENV = "BAR_TRACE_DIR"
ON = bool(os.environ.get(ENV))


def mark(stage: str, detail: str = "") -> None:
    """A timestamped line (nothing unless ``ON``)."""


if ON:
    _main = sys.argv[0] if sys.argv else ""
    _name = os.path.basename(os.path.dirname(_main)) if _main.endswith("__main__.py") else os.path.basename(_main)
    _file = open(os.path.join(os.environ[ENV], f"{_name}.{os.getpid()}.trace"), "a", buffering=1)  # noqa: SIM115
    _gc_started = [0.0]

    def mark(stage: str, detail: str = "") -> None:  # type: ignore[no-redef]  # noqa: F811
        _file.write(f"{time.monotonic():.6f} {stage} {detail}\n")

    def _on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            _gc_started[0] = time.monotonic()
            return
        took = time.monotonic() - _gc_started[0]
        if info["generation"] >= 1 or took > 0.0005:
            mark("gc", f"gen{info['generation']} {took * 1000:.2f}ms")

    gc.callbacks.append(_on_gc)
