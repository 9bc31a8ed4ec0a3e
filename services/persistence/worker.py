"""A background thread that drains every sink's outbox, for the persistence service.

The thread opens its own Store on the same file (WAL: it reads and marks delivered while the service's
Store writes), steps one `Drainer` per sink, and sleeps until the next attempt is due, `idle_s`
passes, or `wake()` is called (call it after a write so records leave promptly). A wake is followed by
`linger_s` more so that the writes of one bar (several write ops within milliseconds) leave in one push
rather than one each; with nothing to deliver the thread looks at the store every `idle_s` only (the
service's writes wake it). `status()` is safe to
call from any thread and feeds the heartbeat (`pending writes`, last error per sink).

    worker = DrainWorker(db_path, build_sinks(cfg_section)).start()
    ...  store.write(...); worker.wake()
    worker.stop(flush_s=5)   # at shutdown: a last delivery attempt, then close
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from services.persistence.backoff import BackoffPolicy
from services.persistence.drain import Drainer
from services.persistence.sinks import Sink
from services.persistence.store import Store, StoreError


class DrainWorker:
    def __init__(self, db_path: str | Path, sinks: Sequence[Sink], *, batch_size: int = 500,
                 policy: BackoffPolicy | None = None, idle_s: float = 5.0, linger_s: float = 0.25,
                 clock: Callable[[], float] = time.monotonic, rand: Callable[[], float] = random.random):
        self.db_path = Path(db_path)
        self.sinks = list(sinks)
        self.batch_size = batch_size
        self.policy = policy or BackoffPolicy()
        self.idle_s = idle_s
        self.linger_s = linger_s
        self._clock = clock
        self._rand = rand
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush_until: float | None = None
        self._lock = threading.Lock()
        self._status: list[dict[str, Any]] = [{"sink": s.name, "backlog": None, "last_error": None}
                                              for s in self.sinks]
        self._thread = threading.Thread(target=self._run, name="persistence-drain", daemon=True)
        self.error: str | None = None  # a store error that stopped the thread

    @property
    def sink_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sinks)

    def start(self) -> DrainWorker:
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(s) for s in self._status]

    def backlog(self) -> int | None:
        """Records not yet delivered, summed over sinks, as the thread last measured them; None until it has
        measured every sink (not measured is not empty). A snapshot: records written since are not in it."""
        backlogs = [s["backlog"] for s in self.status()]
        return None if None in backlogs else sum(backlogs)

    def stop(self, flush_s: float = 0.0, join_s: float = 30.0) -> list[dict[str, Any]]:
        """Stop the thread; with flush_s > 0 first retry every sink (ignoring backoff) until its
        backlog is empty or flush_s has passed. Undelivered records stay in the outbox for next time."""
        self._flush_until = self._clock() + flush_s if flush_s > 0 else None
        self._stop.set()
        self._wake.set()
        self._thread.join(join_s)
        return self.status()

    def _publish(self, drainers: list[Drainer]) -> None:
        now = self._clock()
        snap = [d.status(now) for d in drainers]
        with self._lock:
            self._status = snap

    def _run(self) -> None:
        try:
            store = Store.open(self.db_path, sinks=self.sink_names)
        except StoreError as exc:
            self.error = str(exc)
            return
        drainers = [Drainer(store, s, batch_size=self.batch_size, policy=self.policy) for s in self.sinks]
        try:
            while not self._stop.is_set():
                wait = self.idle_s
                try:
                    for d in drainers:
                        d.step(self._clock(), self._rand())
                    self._publish(drainers)
                    self.error = None
                    now = self._clock()
                    due = min((d.state.next_attempt_at for d in drainers), default=now + self.idle_s)
                    if any(s["backlog"] for s in self.status()):
                        wait = min(self.idle_s, max(0.0, due - now))
                except StoreError as exc:
                    # e.g. a full disk while marking records delivered: they stay pending and are pushed
                    # again later (the sinks upsert, so that is harmless); keep the thread alive.
                    self.error = str(exc)
                if self._wake.wait(wait) and self.linger_s > 0:
                    self._stop.wait(self.linger_s)  # the rest of the bar's writes join this push
                self._wake.clear()
            self._flush(drainers, store)
        except StoreError as exc:
            self.error = str(exc)
        finally:
            for s in self.sinks:
                s.close()
            store.close()

    def _flush(self, drainers: list[Drainer], store: Store) -> None:
        if self._flush_until is None:
            return
        left = [d for d in drainers if store.backlog(d.sink.name).pending]
        while left and self._clock() < self._flush_until:
            for d in left:
                d.state = replace(d.state, next_attempt_at=0.0)
                d.step(self._clock(), self._rand())
            self._publish(drainers)
            left = [d for d in drainers if store.backlog(d.sink.name).pending]
            if left:
                time.sleep(min(0.2, max(0.0, self._flush_until - self._clock())))
        self._publish(drainers)
