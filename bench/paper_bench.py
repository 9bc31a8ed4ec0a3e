"""Paper process cost per bar vs the run's length: N accounts, one bar (one signal per account) at a time.

    python bench/paper_bench.py [--accounts 20] [--at 1,100,400,2000] [--bars 5] [--no-before]

In-process, no sockets (publish is a no-op; persist writes its spool to a temp dir). For each checkpoint the book
is brought to that many bars with the pure `replay` (untimed), then `--bars` bars are timed through the service's
own code, median reported, wall and CPU (process) time:

- before: `services/paper/service.py` as committed (`git show HEAD:...`): per signal, apply + the whole book as
  JSON with fsync + the twin's metrics over the whole curve;
- after: this checkout: per signal, apply + running statistics; per bar (loop pass), one commit (journal append
  + fsync, small state file + fsync + rename) and the metrics messages.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import config, messages  # noqa: E402
from common.twin.position import CostModel  # noqa: E402
from services.paper.account import new_book, replay  # noqa: E402
from services.paper.stats import RunningStats  # noqa: E402


class NullPub:
    def publish(self, topic: str, body: object) -> int:
        return 0

    def publish_many(self, items: object) -> None:
        pass

    def close(self) -> None:
        pass


def committed_service() -> ModuleType:
    src = subprocess.run(["git", "show", "HEAD:services/paper/service.py"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    path = Path(tempfile.mkdtemp(prefix="paper-before-")) / "paper_service_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("paper_service_before", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def symbols(n: int) -> list[str]:
    return [f"SYM{i:02d}" for i in range(n)]


def bar_signals(syms: list[str], bar: int, rng: random.Random) -> list[messages.Signal]:
    out = []
    for s in syms:
        direction = rng.choice((-1, 0, 1))
        intensity = rng.randint(1, 3) if direction else 0
        out.append(messages.Signal(s, 3600 * bar, 1.1 * (1 + rng.gauss(0, 0.002)), 0, direction, intensity,
                                   rng.randint(0, 2), 0.0))
    return out


def rows(signals: list[messages.Signal]) -> list[tuple]:
    return [(s.symbol, s.direction, s.intensity, s.close, s.bar_time, s.hmm_state) for s in signals]


def measure(kind: str, cls: type, cfg: config.Config, n_accounts: int, at: int, bars: int) -> tuple[float, float]:
    """Median (wall ms, CPU ms) of one bar after `at - 1` bars."""
    tmp = Path(tempfile.mkdtemp(prefix=f"paper-bench-{kind}-"))
    syms = symbols(n_accounts)
    rng = random.Random(at)
    book = new_book({s: CostModel() for s in syms})
    book = replay(book, [r for bar in range(1, at) for r in rows(bar_signals(syms, bar, rng))])
    svc = cls(cfg)
    svc.pub = NullPub()
    svc._spool_path = lambda: tmp / "outbox.jsonl"
    svc.state_path = tmp / "paper-state.json"
    svc.book = book
    if kind == "after":
        from services.paper.store import BookStore
        svc.store = BookStore(svc.state_path)
        svc.store.save(book)  # what earlier passes committed
        svc.stats = {s: RunningStats.of(a) for s, a in book.accounts.items()}
    walls, cpus = [], []
    for bar in range(at, at + bars):
        batch = bar_signals(syms, bar, rng)
        w0, c0 = time.perf_counter(), time.process_time()
        for sig in batch:
            svc._apply(sig)
        if kind == "after":
            svc._commit()  # the end of the loop pass
        walls.append((time.perf_counter() - w0) * 1000)
        cpus.append((time.process_time() - c0) * 1000)
    if svc._spool is not None:
        import os
        os.close(svc._spool)
    svc.ctx.term()
    assert svc.book.accounts[syms[0]].last_bar_time == 3600 * (at + bars - 1)
    return statistics.median(walls), statistics.median(cpus)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accounts", type=int, default=20)
    p.add_argument("--at", default="1,100,400,2000", help="bars already run at each checkpoint")
    p.add_argument("--bars", type=int, default=5, help="bars timed per checkpoint (median)")
    p.add_argument("--no-before", action="store_true", help="skip the committed version")
    args = p.parse_args(argv)
    cfg = config.load()
    from services.paper.service import Paper as After
    kinds: list[tuple[str, type]] = [("after", After)]
    if not args.no_before:
        kinds.insert(0, ("before", committed_service().Paper))
    print(f"paper per-bar cost, {args.accounts} accounts, median of {args.bars} bars (wall ms / CPU ms)")
    print(f"{'bar':>6} " + " ".join(f"{k:>20}" for k, _ in kinds))
    for at in (int(x) for x in args.at.split(",")):
        cells = []
        for kind, cls in kinds:
            wall, cpu = measure(kind, cls, cfg, args.accounts, at, args.bars)
            cells.append(f"{wall:9.2f} / {cpu:7.2f}")
        print(f"{at:>6} " + " ".join(f"{c:>20}" for c in cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
