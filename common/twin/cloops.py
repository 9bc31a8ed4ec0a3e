"""The twin's C loops (``common/twin/_filter.c``): the HMM forward filter and the trend EMA.

Built by ``pip install -e .`` (``./scripts/bootstrap.sh``). There is deliberately no pure-Python fallback in
production: a missing or stale build is an ImportError that says how to build it, not a silently 100x slower
twin. The Python reference implementations (``hmm.forward_filter_reference``, ``features.trend_ema_reference``)
are the executable specification the tests compare the C loops with, bit for bit.
"""

from __future__ import annotations

ABI_VERSION = 1  # must match ABI_VERSION in _filter.c; bump both when the C interface changes

try:
    from common.twin import _filter
except ImportError as exc:
    raise ImportError(
        f"common.twin._filter, the twin's C loops (common/twin/_filter.c), is not built ({exc}): "
        "run ./scripts/bootstrap.sh, or .venv/bin/python -m pip install -e '.[dev,train]', to compile it") from exc

if getattr(_filter, "ABI_VERSION", None) != ABI_VERSION:
    raise ImportError(f"common.twin._filter is a stale build (ABI {getattr(_filter, 'ABI_VERSION', None)}, "
                      f"expected {ABI_VERSION}): rebuild it with .venv/bin/python -m pip install -e '.[dev,train]'")

forward_filter = _filter.forward_filter
ema = _filter.ema
