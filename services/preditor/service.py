"""The preditor process: one digital twin per model, fed with closed bars, publishing one signal per bar.

- ``preditor.load``: every ``*.zip`` in ``preditor.models_dir`` (``model_file.load_models``). A refused model is
  alerted and shown in the status; the others load. One model per symbol (``signal.<SYM>`` has one author).
- ``preditor.warmup``: per model, the twin snapshot (``data_dir/preditor/twins.jsonl``, ``store.py``, same model
  id; else the per-model ``<SYM>_<TF>.twin.json`` of before, read once) if any, then ``history``
  (``warmup_bars``) from the connector fast-forwarded, then ``subscribe`` since the last bar. The decisions of
  the bars after a restored snapshot's (closed while the preditor was down) are published in bar order marked
  ``catch_up`` (a twin that starts flat decides its warmup silently). Pushed again after a connector restart: a
  twin already running then catches up with signals.
- Catch-up signals (``catch_up``): paper simulates each at its bar; the executor records them and acts on the
  latest position only (a gap fill's last signal, when no live bar follows it, goes out unmarked).
- ``signals_since``: each model's recent signals (``journal.py``, in the same file, written before its snapshot),
  so paper gets the signals it missed while it was down.
- Every closed bar on ``bar.<SYM>.<TF>``: duplicates dropped; a jump over missing bars (not the weekly close, see
  ``gaps.py``) is filled from history first, in order; then ``step`` and one ``Signal`` on ``signal.<SYM>``. The
  signals of the bars waiting are published together once they are stepped (at most ``PUBLISH_DELAY_MAX_S``
  after the first: one wake of the subscribers per bar time, not one per symbol). The snapshots and signals of
  every twin stepped are written (one write) once no more bars wait, so when the bars of many symbols close
  together every signal goes out before any file is written (at most ``SNAPSHOT_DELAY_MAX_S`` later under a
  stream of bars); a live bar time (its bars came after a pause) is written ``SNAPSHOT_AFTER_S`` after it was
  stepped, after the close's orders, and fdatasynced in that turn (or before the next bars are stepped if they come
  sooner); a burst's bar times are written as they go and share one fdatasync once no bar came for
  ``SYNC_LINGER_S``. The write is in the OS at once (a kill -9 loses nothing written). A crash in between replays
  those bars from the previous snapshot on restart and publishes the same signals again, which the executor and
  paper drop (``bar_time`` not after the last they handled). A new connector epoch makes every twin catch up from
  history; a sequence gap in a ``bar.*`` stream makes its twin ask history at its next bar even across a weekend.
- Bars wait in a queue processed in ``on_tick`` (``pending_work`` is its length): a failed gap fill leaves the
  bar pending and is retried; it is never predicted on a hole.
- Never reads the account or the executor's acks (lesson A10): the twin is the model's own world.

Blocking requests to the connector keep the heartbeat going (``beat_if_due`` while waiting).

Shards (``preditor.shards`` > 1, common/programs.py): this process is ``preditor-<n>`` (``--shard n``), loads the
models of its symbols only (``Config.preditor_shards``), subscribes to their bars only, and keeps its own files
(``data_dir/<snapshot_dir>/preditor-<n>/``) and endpoints; a model of a symbol in no shard is refused (status).
"""

from __future__ import annotations

import argparse
import collections
import functools
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import zmq

from common import bus, config, logs, messages, programs, runtime, trace, wire
from common.bus import Received
from common.config import TIMEFRAMES
from common.model_meta import read_models
from common.schema import shown
from common.sequence import Delivery
from common.twin.many import observe_bars, run_bars, step_run
from common.twin.twin import Decision, TwinState, decide, initial_state, is_new_bar, step
from services.preditor import gaps, journal, live, store
from services.preditor.journal import Journal, journal_name

log = logging.getLogger("oracle.preditor")

WARMUP_CHUNK = 25  # bars between heartbeats during a fast-forward
SNAPSHOT_DELAY_MAX_S = 1.0  # snapshots wait for the bars still arriving, at most this long
SYNC_LINGER_S = 0.02  # the snapshots written are fdatasynced once no bar came for this long (one sync for a burst)
# a bar time after a pause (a live close) has its snapshots written and fdatasynced this long after its bars were
# stepped: after the close's orders, whose write-ahead fdatasyncs (the executor's, the connector's) would otherwise
# queue behind this larger one on the disk and share the two cores with its encoding
SNAPSHOT_AFTER_S = 0.04
PUBLISH_DELAY_MAX_S = 0.002  # a decided signal waits for the next ones of the same bars at most this long
GATHER_MAX_S = 0.002  # the bars queued wait for those still arriving (stepped together) at most this long


def _import_model_code() -> None:
    """torch and the model code take seconds to import: done on a thread so heartbeats start at once."""
    import torch

    torch.set_num_threads(1)  # batch-1 inference: ~15x faster than 2 threads here, and the backtest's setting
    import services.preditor.model_file  # noqa: F401


class GapNotFilled(RuntimeError):
    """The connector could not give the missing bars; the live bar waits (never predicted on a hole)."""


@dataclass
class Track:
    """One model's twin in this process (the shell's mutable state around the pure twin)."""

    model: Any  # model_file.LoadedModel
    state: TwinState
    warm: bool = False
    restored: str = ""  # what the snapshot restore did
    last_bar_wall: float | None = None  # monotonic time of the last bar processed (or of the warmup)
    error: str = ""
    signals: int = 0
    tf_s: int = field(init=False)
    snapshots: live.SnapshotEncoder = field(default_factory=live.SnapshotEncoder)
    journal: Journal | None = None  # its recent signals (``signals_since``), from the warmup on
    logged: bool = False  # the file holds this twin (written by this process)
    logged_bars: Any = None  # the bars of its last twin record in the file (np.ndarray), None: a whole one is due
    legacy: list[Path] = field(default_factory=list)  # the per-model files of before, removed once it is logged
    # the model's names, kept (read at every bar: the model's own are properties over its metadata)
    symbol: str = field(init=False)
    timeframe: str = field(init=False)
    key: str = field(init=False)  # in the snapshot file
    topic: str = field(init=False)  # of its signals
    slot: int = -1  # its net's index in the service's ``PolicyBatch``

    def __post_init__(self) -> None:
        self.symbol, self.timeframe = self.model.symbol, self.model.timeframe
        self.tf_s = TIMEFRAMES[self.timeframe]
        self.key = store.model_key(self.symbol, self.timeframe)
        self.topic = messages.signal_topic(self.symbol)


class Preditor(runtime.Service):
    name = "preditor"
    status_record = messages.PreditorStatus
    steps = {"preditor.load": "_load", "preditor.warmup": "_warmup_all"}
    subscribe_to = {"orchestrator": [messages.SYS_STATE_TOPIC], "connector": ["bar.", "bars."]}
    not_implemented: list[str] = []
    shard: ClassVar[int | None] = None  # --shard n: which of preditor.shards this process is

    @classmethod
    def program(cls, cfg: config.Config) -> str:
        return programs.shard_name("preditor", cfg.preditor.shards, cls.shard)  # ShardError: main says why

    def __init__(self, cfg, dry_run: bool = False):
        self.name = self.program(cfg)
        # None: every model in models_dir (one process); else this shard's symbols
        self.symbols: frozenset[str] | None = None
        if cfg.preditor.shards > 1:
            logs.set_service(self.name)
            self.symbols = frozenset(cfg.preditor_shards()[self.name])
            self.subscribe_to = {"orchestrator": [messages.SYS_STATE_TOPIC],
                                 "connector": [f"{kind}.{s}." for s in sorted(self.symbols)
                                               for kind in ("bar", "bars")]}
        super().__init__(cfg, dry_run)
        self.tracks: dict[str, Track] = {}  # by symbol
        self.load_errors: list[str] = []
        self.queue: collections.deque[messages.Bar | messages.BarRun] = collections.deque()
        self.run_signals: list[messages.Signal] | None = None  # while a run is stepped: its signals (``_on_run``)
        self.queued_since = 0.0  # monotonic time the first bar of the queue came
        self.catch_up_all = False  # a new connector epoch: every twin asks history
        self.caught_up_epoch = 0
        self.force_fill: set[str] = set()  # symbols whose bar stream had a sequence gap
        self.retry_at = 0.0
        self.warmup_retry_at: float | None = None  # set after the first warmup step, when a model failed it
        self.last_problem = ""
        self.snapshot_dir = cfg.path(cfg.data_dir) / cfg.preditor.snapshot_dir
        if self.symbols is not None:  # no two shards write one file
            self.snapshot_dir = self.snapshot_dir / self.name
        self.fsync_snapshots = cfg.preditor.fsync_snapshots
        self.unsaved: dict[str, Track] = {}  # twins stepped since their last snapshot, by symbol
        self.decided: list[tuple[str, messages.Signal]] = []  # (topic, signal) decided, not yet published
        self.decided_since = 0.0  # monotonic time of the first of them
        self.last_bar_at = 0.0  # monotonic time of the last bar stepped
        self.after_pause = False  # the bars stepped last came SYNC_LINGER_S or more after the ones before: no burst
        self.log = store.TwinLog(self.snapshot_dir, self.fsync_snapshots)
        self.saved: dict[str, store.Saved] | None = None  # what the file held at the first warmup, by model key
        self.unsaved_since = 0.0
        self.unsynced_since = 0.0  # monotonic time of the first write not fdatasynced yet
        self._connector: bus.Requester | None = None
        self.policies: Any = None  # policy_batch.PolicyBatch over the tracks' nets (torch: imported at the load)
        self._importer = threading.Thread(target=_import_model_code, name="import-torch", daemon=True)
        self._importer.start()

    # ---- steps ----------------------------------------------------------------------------------
    def _load(self) -> dict:
        while self._importer.is_alive():  # torch is still importing (a fresh process): keep beating
            self._importer.join(0.1)
            self.beat_if_due()
        import torch

        from services.preditor.model_file import load_models  # torch: only in this process
        from services.preditor.policy_batch import PolicyBatch

        torch.set_num_threads(1)

        models_dir = self.cfg.path(self.cfg.preditor.models_dir)
        if not models_dir.is_dir():
            raise runtime.PermanentFailure(f"models_dir {models_dir} is not a directory")
        if self.tracks:  # a repeated step: the models are loaded and their twins run on
            return self._load_facts()
        models, errors = load_models(models_dir, trusted_names=self.cfg.preditor.trusted_models,
                                     symbols=self.symbols)
        self.load_errors = [str(e) for e in errors]
        if self.symbols is not None:  # a model no shard loads is said so (by each shard)
            assigned = {s for own in self.cfg.preditor_shards().values() for s in own}
            self.load_errors += [f"{m.file}: refused: {m.symbol} is in no preditor shard (connector.symbols, "
                                 f"preditor.assignment)" for m in read_models(models_dir)[0]
                                 if m.symbol not in assigned]
        for model in models:
            other = self.tracks.get(model.symbol)
            if other is not None:
                self.load_errors.append(f"{model.path.name}: refused: {model.symbol} already has the model "
                                        f"{other.model.path.name} (one model per symbol)")
                continue
            if model.timeframe not in TIMEFRAMES:
                self.load_errors.append(f"{model.path.name}: refused: timeframe {model.timeframe!r} is not one of "
                                        f"{', '.join(TIMEFRAMES)}")
                continue
            self.tracks[model.symbol] = Track(model, initial_state(model.model_id))
        for slot, t in enumerate(self.tracks.values()):
            t.slot = slot
        self.policies = PolicyBatch([t.model.policy for t in self.tracks.values()])
        for err in self.load_errors:
            self.alert("model_refused", "critical", err)
        if not self.tracks:
            log.warning("no model loaded from %s: no signal will be published", models_dir)
        for t in self.tracks.values():
            logs.event(log, logging.INFO, "model loaded", file=t.model.path.name, symbol=t.symbol,
                       timeframe=t.timeframe, model_id=t.model.model_id, legacy=t.model.legacy)
        return self._load_facts()

    def _load_facts(self) -> dict:
        return {"models": {s: f"{t.timeframe} {t.model.path.name}" for s, t in self.tracks.items()},
                "refused": list(self.load_errors)}

    def _warmup_all(self) -> dict:
        done, failed = {}, {}
        for track in self.tracks.values():
            try:
                done[track.symbol] = self._warmup(track)
                track.error = ""
            except (bus.RequestTimeout, bus.RequestFailed, wire.WireError, ValueError, GapNotFilled) as exc:
                track.error = f"warmup: {exc}"
                failed[track.symbol] = track.error
                self.alert("warmup_failed", "critical", f"{track.symbol} {track.timeframe}: {exc}")
        if failed and not done:
            raise runtime.StepFailed("no model warmed up: " + "; ".join(f"{s}: {e}" for s, e in failed.items()))
        self.warmup_retry_at = time.monotonic() + self.cfg.preditor.warmup_retry_s if failed else None
        return {"warmed_up": done, "failed": failed}

    def _warmup(self, track: Track) -> dict:
        t0 = time.monotonic()
        model = track.model
        if track.warm:  # pushed again (a restarted connector): a running twin catches up, with signals
            n = self._catch_up(track)
            self._subscribe(track)
            return {"caught_up": n, "last_bar": track.state.last_bar_time}
        saved, upgrade = self._saved_of(track)
        restored = live.restore(saved.snapshot, model.model_id)
        state = restored.state or initial_state(model.model_id)
        why = restored.why
        rows = self._ask(messages.OP_HISTORY.name,
                         messages.HistoryArgs(track.symbol, track.timeframe, count=self.cfg.preditor.warmup_bars),
                         f"history {track.symbol} {track.timeframe}").bars
        history = live.history_array(rows)
        if restored.state is not None and not live.covers(history, state, track.tf_s):
            why = (f"snapshot at bar {state.last_bar_time} is older than the history (from {int(history[0, 0])}): "
                   f"discarded, the twin starts flat")
            self.alert("twin_restarted_flat", "warning", f"{track.symbol}: {why}")
            state = initial_state(model.model_id)
        before = state.last_bar_time
        track.journal = Journal(saved.signals, written=not upgrade,
                                line=functools.partial(store.signal_line, track.key), lines=saved.lines)
        if before is None:
            track.journal.reset()  # a twin that starts flat: its warmup decisions are not signals
        track.logged_bars = None if upgrade or restored.state is None else state.bars.copy()
        caught_up = 0
        for i in range(0, len(history), WARMUP_CHUNK):
            previous = state.last_decision
            state, decisions = run_bars(model.spec, state, history[i:i + WARMUP_CHUNK], model.policy_fn)
            if before is not None:  # bars closed while the preditor was down: their decisions go out, marked
                for d in decisions:
                    self._send(track, d, previous, catch_up=True)
                    previous = d
                caught_up += len(decisions)
                self._publish_decided()
            self.beat_if_due()
        track.state, track.restored = state, why
        self._write_snapshot(track)
        sub = self._subscribe(track)  # if this fails the model stays cold and its warmup is retried
        track.warm = True
        track.last_bar_wall = time.monotonic()
        facts = {"history": len(history), "restored": why, "from_bar": before, "last_bar": state.last_bar_time,
                 "decisions": state.decisions, "caught_up": caught_up, "ms": round((time.monotonic() - t0) * 1000, 1),
                 "resumed_after": sub.resumed_after}
        logs.event(log, logging.INFO, "warmed up", symbol=track.symbol, **facts)
        return facts

    def _subscribe(self, track: Track) -> messages.Subscribed:
        return self._ask(messages.OP_SUBSCRIBE.name,
                         messages.SubscribeArgs(track.symbol, track.timeframe, since=track.state.last_bar_time),
                         f"subscribe {track.symbol} {track.timeframe}")

    # ---- requests to the connector -----------------------------------------------------------------
    def _ask(self, op: str, args: Any, what: str, timeout_s: float | None = None) -> Any:
        """One request to the connector, heartbeats going on while it waits (Lazy Pirate: reset on timeout); the
        signals decided go out first (a run's decided so far too)."""
        if self.run_signals:
            held = list(self.run_signals)
            self.run_signals.clear()
            self._decided_run(held[0].symbol, held)
        self._publish_decided()
        if self._connector is None:
            self._connector = bus.Requester(self.ctx, self.cfg.endpoint("connector", "rep"), self.name,
                                            int(self.cfg.preditor.history_timeout_s * 1000))
        return self.ask(self._connector, op, args, int((timeout_s or self.cfg.preditor.history_timeout_s) * 1000),
                        what)

    def _history_since(self, track: Track, until: int | None = None) -> list[messages.Bar]:
        res = self._ask(messages.OP_HISTORY.name,
                        messages.HistoryArgs(track.symbol, track.timeframe, since=track.state.last_bar_time,
                                             until=until),
                        f"history {track.symbol} {track.timeframe} since {track.state.last_bar_time}",
                        self.cfg.preditor.gap_fill_timeout_s)  # the live loop waits: short, retried
        bars = live.history_array(res.bars)
        self.count("history_bars", len(bars))
        return [messages.Bar(track.symbol, track.timeframe, int(r[0]), *(float(x) for x in r[1:])) for r in bars]

    # ---- live bars ----------------------------------------------------------------------------------
    def on_message(self, received: Received) -> None:
        env = received.envelope
        delivery = received.seen.delivery
        # A new connector epoch: bars may have closed while it restarted, for any symbol: every twin asks history
        # (once per epoch: the seq, hence NEW_EPOCH, is per topic).
        if env.src == "connector" and delivery == Delivery.NEW_EPOCH and env.epoch != self.caught_up_epoch:
            self.caught_up_epoch = env.epoch
            self.catch_up_all = True
            logs.event(log, logging.INFO, "new connector epoch: every twin catches up", epoch=env.epoch)
        if isinstance(env.body, messages.Bar | messages.BarRun):
            if delivery == Delivery.GAP:  # bars of this topic were lost: ask history even over a weekend
                self.force_fill.add(env.body.symbol)
            if not self.queue:
                self.queued_since = time.monotonic()
            self.queue.append(env.body)
            if isinstance(env.body, messages.BarRun):
                self.count("bar_runs_received")
                self.count("bars_received", len(env.body.bars))
            else:
                self.count("bars_received")

    def on_tick(self, now: float) -> None:
        if self.warmup_retry_at is not None and now >= self.warmup_retry_at:
            self._retry_warmups()
        if now >= self.retry_at and (self.queue or self.catch_up_all) and not self._gathering(now):
            self._process_queue()
        if self.unsaved and not self._snapshot_waits(now):
            self._write_snapshots(force=now - self.unsaved_since >= SNAPSHOT_DELAY_MAX_S)
        if self.log.unsynced:
            now = time.monotonic()
            if ((self.after_pause and not self.queue and not self.unsaved) or now - self.last_bar_at >= SYNC_LINGER_S
                    or now - self.unsynced_since >= SNAPSHOT_DELAY_MAX_S):
                self._sync_snapshots()

    def _snapshot_waits(self, now: float) -> bool:
        """Do the snapshots of a live close wait for its orders (``SNAPSHOT_AFTER_S``)? Written later, they are in the
        OS later: a kill -9 meanwhile replays the close's bars from the previous snapshot on restart and publishes
        the same signals again, which the executor and paper drop (as for a kill before any write)."""
        return self.after_pause and now - self.last_bar_at < SNAPSHOT_AFTER_S

    def poll_timeout_ms(self) -> int:
        """Wake up for the snapshots' write when it is due (``SNAPSHOT_AFTER_S`` after a live close's bars), for their
        fdatasync (``SYNC_LINGER_S`` after a burst's last bar)."""
        timeout = super().poll_timeout_ms()
        if self.unsaved and self.after_pause:
            due_ms = (self.last_bar_at + SNAPSHOT_AFTER_S - time.monotonic()) * 1000
            timeout = max(1, min(timeout, int(due_ms) + 1))
        if self.queue:  # the end of the gathering of a close's bars
            gather_ms = (self.queued_since + GATHER_MAX_S - time.monotonic()) * 1000
            if gather_ms > 0:
                timeout = max(1, min(timeout, int(gather_ms) + 1))
        if self.log.unsynced:
            due_ms = (self.last_bar_at + SYNC_LINGER_S - time.monotonic()) * 1000
            timeout = max(1, min(timeout, int(due_ms) + 1))
        return timeout

    def _process_queue(self) -> None:
        """Step the bars waiting, publishing their signals together (at least every ``PUBLISH_DELAY_MAX_S``): one
        burst of messages wakes the subscribers and the socket's I/O thread once for a bar time, not per symbol.
        A live close's snapshots still waiting (``SNAPSHOT_AFTER_S``) are written first: a kill -9 replays at most
        the last bar time, even when closes follow each other faster than that wait."""
        if self.unsaved and self.after_pause:
            self._write_snapshots()
        self.after_pause = time.monotonic() - self.last_bar_at >= SYNC_LINGER_S
        try:
            if self.catch_up_all:
                for track in self.tracks.values():
                    if track.warm:
                        self._catch_up(track)
                self.catch_up_all = False
            queue = self.queue
            while queue:
                ready = self._take_ready()
                if ready:
                    self._process_together(ready)
                elif queue and isinstance(queue[0], messages.BarRun):
                    self._on_run(queue[0])  # a gap fill failing in it: the run is retried, its stepped bars dropped
                    queue.popleft()
                elif queue:  # the head needs the bars before it from history first
                    self._on_bar(queue[0])
                    queue.popleft()
                if self.decided and self.last_bar_at - self.decided_since >= PUBLISH_DELAY_MAX_S:
                    self._publish_decided()
                self.beat_if_due()
        except GapNotFilled as exc:
            self.retry_at = time.monotonic() + self.cfg.preditor.gap_retry_s
            if str(exc) != self.last_problem:
                self.alert("gap_not_filled", "warning", str(exc))
            self.last_problem = str(exc)
            return
        finally:
            self._publish_decided()
        self.last_problem = ""

    def _gathering(self, now: float) -> bool:
        """Do the bars queued wait for the next ones (the bars of one close arrive within a millisecond or so:
        stepped together, their policies are asked at once)? While more are on the SUB socket or fewer symbols
        are queued than twins of the first bar's timeframe are warm, at most ``GATHER_MAX_S`` after the first."""
        queue = self.queue
        if not queue or now - self.queued_since >= GATHER_MAX_S or isinstance(queue[0], messages.BarRun):
            return False  # a run is stepped at once: its bars are all there
        if self._bars_arriving():
            return True
        tf = queue[0].timeframe
        return len({b.symbol for b in queue}) < sum(t.warm and t.timeframe == tf for t in self.tracks.values())

    def _bars_arriving(self) -> bool:
        """Are messages waiting on the SUB socket (more bars of the same close, most likely)?"""
        return self.sub is not None and bool(self.sub.sock.get(zmq.EVENTS) & zmq.POLLIN)  # cheaper than poll(0)

    def _retry_warmups(self) -> None:
        self.warmup_retry_at = None
        for track in self.tracks.values():
            if track.warm:
                continue
            try:
                self._warmup(track)
                track.error = ""
            except (bus.RequestTimeout, bus.RequestFailed, wire.WireError, ValueError, GapNotFilled) as exc:
                track.error = f"warmup: {exc}"
                self.warmup_retry_at = time.monotonic() + self.cfg.preditor.warmup_retry_s

    def _track_of(self, bar: messages.Bar) -> tuple[Track | None, messages.Bar]:
        """The twin a queued bar steps (None: counted and dropped) and the bar as the twin reads it."""
        track = self.tracks.get(bar.symbol)
        if track is None or bar.timeframe != track.timeframe:
            self.count("bars_ignored")  # another consumer's symbol or timeframe
            return None, bar
        if not track.warm:
            self.count("bars_before_warmup")  # the warmup's history covers it
            return None, bar
        bar = live.twin_bar(bar)
        if not is_new_bar(track.state, bar):
            self.count("bars_duplicate")
            return None, bar
        return track, bar

    def _needs_fill(self, track: Track, bar: messages.Bar) -> bool:
        last = track.state.last_bar_time
        lost = bar.symbol in self.force_fill and last is not None and bar.time - last > track.tf_s
        return lost or gaps.needs_fill(last, bar.time, track.tf_s)

    def _on_bar(self, bar: messages.Bar) -> None:
        track, bar = self._track_of(bar)
        if track is None:
            return
        if self._needs_fill(track, bar):
            self._catch_up(track, until=bar.time)
        self.force_fill.discard(bar.symbol)
        self._process(track, bar)

    def _on_run(self, run: messages.BarRun) -> None:
        """Step a run's bars one after the other, as ``_on_bar`` steps each (the twin's own policy, bar after bar:
        what the backtest does; those that need no history together, ``_process_run``), their signals (a gap fill's
        before them included) published as one ``SignalRun`` of at most ``messages.MAX_RUN`` (a lone signal as a
        ``Signal``), in order with the others decided."""
        self.run_signals = collected = []
        try:
            together: list[messages.Bar] = []  # the run's bars that step without history, stepped at once
            track: Track | None = None
            for bar in run.bars:
                t, twin_bar = self._track_of(bar)
                if t is None:
                    continue
                last = together[-1].time if together else t.state.last_bar_time
                if bar.symbol in self.force_fill or gaps.needs_fill(last, twin_bar.time, t.tf_s):
                    if together:
                        self._process_run(t, together)
                        together = []
                    self._on_bar(bar)  # the bars before it from history first
                else:
                    track = t
                    together.append(twin_bar)
            if together:
                assert track is not None
                self._process_run(track, together)
        finally:
            self.run_signals = None
            self._decided_run(run.symbol, collected)
        self.count("bar_runs")

    def _decided_run(self, symbol: str, signals: list[messages.Signal]) -> None:
        if not signals:
            return
        if not self.decided:
            self.decided_since = time.monotonic()
        for part in messages.split_run(signals):
            if len(part) == 1:
                self.decided.append((messages.signal_topic(symbol), part[0]))
            else:
                self.decided.append((messages.signals_topic(symbol), messages.SignalRun(symbol, part)))

    def _take_ready(self) -> list[tuple[Track, messages.Bar]]:
        """The bars at the head of the queue that step without history (one per twin, in order), taken off it
        (those dropped too); stops at a bar that needs history first, or a twin's second bar."""
        ready: list[tuple[Track, messages.Bar]] = []
        taken: set[str] = set()
        queue = self.queue
        while queue:
            head = queue[0]
            if head.symbol in taken or isinstance(head, messages.BarRun):
                break
            track, bar = self._track_of(head)
            if track is not None:
                if self._needs_fill(track, bar):
                    break
                ready.append((track, bar))
                taken.add(bar.symbol)
            queue.popleft()
        return ready

    def _process_together(self, ready: list[tuple[Track, messages.Bar]]) -> None:
        """Step the bars of several twins (one each): their features computed together (``many.observe_bars``:
        each twin's own bits), their policies asked at once (``PolicyBatch``: the actions each model's own net
        gives), their signals decided in the bars' order."""
        for _, bar in ready:
            self.force_fill.discard(bar.symbol)
        observed = observe_bars([(track.model.spec, track.state, bar) for track, bar in ready])
        seen = [(track, state) for (track, _), state in zip(ready, observed, strict=True)]
        asked = [(t.slot, s.observation) for t, s in seen if not isinstance(s, TwinState)]
        actions = iter(self.policies.actions(asked)) if asked else iter(())
        for track, state in seen:
            previous = track.state.last_decision
            if isinstance(state, TwinState):
                self._stepped(track, state, None, previous)
            else:
                self._stepped(track, *decide(track.model.spec, track.state, state, next(actions)), previous)
        self.count("policy_batches")

    def _catch_up(self, track: Track, until: int | None = None) -> int:
        """Process (with signals) every bar the connector has after the twin's last bar (before ``until``)."""
        try:
            missing = self._history_since(track, until)
        except (bus.RequestTimeout, bus.RequestFailed, wire.WireError, ValueError) as exc:
            raise GapNotFilled(f"{track.symbol} {track.timeframe}: bars after {track.state.last_bar_time} "
                               f"not available: {exc}") from None
        fresh = [b for b in map(live.twin_bar, missing) if is_new_bar(track.state, b)]
        model = track.model
        for n, (state, decision) in enumerate(step_run(model.spec, track.state, fresh, model.policy_fn), 1):
            # catch-up signals but the last of a catch-up that no live bar follows (the position to take now)
            self._stepped(track, state, decision, track.state.last_decision,
                          catch_up=until is not None or n < len(fresh))
        n = len(fresh)
        if n:
            self.count("bars_gap_filled", n)
            logs.event(log, logging.INFO, "gap filled", symbol=track.symbol, bars=n, until=until)
        return n

    def _process(self, track: Track, bar: messages.Bar, catch_up: bool = False) -> None:
        """Step ``bar`` (``live.twin_bar``'s) and decide its signal (published by ``_publish_decided``)."""
        model = track.model
        previous = track.state.last_decision
        state, decision = step(model.spec, track.state, bar, model.policy_fn)
        self._stepped(track, state, decision, previous, catch_up)

    def _process_run(self, track: Track, bars: list[messages.Bar]) -> None:
        """Step successive bars of one twin (``live.twin_bar``'s, in order, none needing history) and decide their
        signals: ``many.step_run``, the states and decisions of ``_process`` bar after bar."""
        model = track.model
        for state, decision in step_run(model.spec, track.state, bars, model.policy_fn):
            self._stepped(track, state, decision, track.state.last_decision)

    def _stepped(self, track: Track, state: TwinState, decision: Decision | None, previous: Decision | None,
                 catch_up: bool = False) -> None:
        track.state = state
        track.last_bar_wall = now = time.monotonic()
        self.last_bar_at = now
        self.count("bars_seen")
        if decision is not None:
            self._send(track, decision, previous, catch_up)
        if not self.unsaved:
            self.unsaved_since = now
        self.unsaved[track.symbol] = track

    def _send(self, track: Track, decision: Decision, previous: Decision | None, catch_up: bool) -> None:
        signal = live.signal_of(track.symbol, decision, previous, catch_up)
        if self.run_signals is not None:
            self.run_signals.append(signal)  # a run's: published with the others of the run (``_on_run``)
        else:
            if not self.decided:
                self.decided_since = time.monotonic()
            self.decided.append((track.topic, signal))
        if track.journal is not None:
            track.journal.add(signal)
        track.signals += 1
        self.count("catch_up_signals_sent" if catch_up else "signals_sent")

    def _publish_decided(self) -> None:
        """Publish the signals decided, in order; before anything waits (a request) and before any snapshot is
        written (a snapshot never covers a bar whose signal has not gone out)."""
        if self.decided:
            decided, self.decided = self.decided, []
            assert self.pub is not None
            self.pub.publish_many(decided)  # one lock, one timestamp
            trace.mark("preditor.signals_published", str(len(decided)))

    # ---- snapshots and signal journals (the only files this process writes) -----------------------------------
    def _saved_of(self, track: Track) -> tuple[store.Saved, bool]:
        """What the file holds for this model; else what its per-model files of before hold (True: read once, they
        are removed once the file holds the model, as are those a crash left after the file had it)."""
        if self.saved is None:
            try:
                self.saved = self.log.load()
            except OSError as exc:
                self.alert("snapshot_read_failed", "warning", f"cannot read {self.log.path}: {exc}; starting flat")
                self.saved = {}
        snapshot = self.snapshot_dir / live.snapshot_name(track.symbol, track.timeframe)
        signals = self.snapshot_dir / journal_name(track.symbol, track.timeframe)
        track.legacy = [p for p in (snapshot, signals) if p.exists()]
        if track.key in self.saved:
            return self.saved[track.key], False
        raw, lines = self._read_legacy(track, snapshot), self._read_legacy(track, signals)
        kept = collections.deque(journal.parse(lines or b""), maxlen=journal.KEEP)
        return store.Saved(live.snapshot_dict(raw), kept), bool(track.legacy)

    def _read_legacy(self, track: Track, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.alert("snapshot_read_failed", "warning", f"{track.symbol}: cannot read {path}: {exc}; starting flat")
            return None

    def _write_snapshots(self, force: bool = True) -> None:
        """Write the snapshots and signals of the twins stepped since their last write, all in one write (to the
        OS: a kill -9 loses nothing; fdatasynced by ``_sync_snapshots`` once the bars pause); unless ``force``d,
        not while bars arrive (their signals go first)."""
        if self.unsaved and (force or not self._bars_arriving()):
            tracks = list(self.unsaved.values())
            self.unsaved.clear()
            self._flush(tracks, sync=False)

    def _write_snapshot(self, track: Track) -> None:
        self.unsaved.pop(track.symbol, None)
        self._flush([track])

    def _sync_snapshots(self) -> None:
        """One fdatasync for the writes since the last (a failure is alerted; the next write rewrites the file)."""
        try:
            self.log.sync()
        except OSError as exc:
            self.count("snapshot_errors")
            for t in self.tracks.values():
                if t.logged:
                    self._write_failed(t, f"cannot write the twin snapshot {self.log.path} (fdatasync): "
                                          f"{exc.strerror or exc}")

    def _flush(self, tracks: list[Track], sync: bool = True) -> None:
        """One write (and one fdatasync unless not ``sync``): each twin's new signals, then its snapshot
        (``store.py``); the file rewritten whole when due. A failed write is alerted and the twins go on: their
        signals matter more than their restart point (kept in memory, written at the next write, which rewrites
        the file). The signals decided go out before (a snapshot never covers a bar whose signal did not)."""
        self._publish_decided()
        data = b"".join(self._records(t) for t in tracks)
        written = tracks
        try:
            if self.log.due(len(data)):
                batch = {id(t) for t in tracks}  # by identity: a Track's == compares its arrays
                written = [t for t in self.tracks.values() if t.logged or id(t) in batch]
                self.log.rewrite(self._whole(written))
            else:
                if not self.log.unsynced:
                    self.unsynced_since = time.monotonic()
                self.log.append(data, sync=sync)
        except OSError as exc:
            self.count("snapshot_errors")
            for t in tracks:
                self._write_failed(t, f"cannot write the twin snapshot {self.log.path}: {exc.strerror or exc}")
            return
        for t in written:
            self._logged(t)

    def _records(self, track: Track) -> bytes:
        """What the file needs for this twin since its last record: its signals, then its snapshot (relative to
        the last one when its bars continue them)."""
        j = track.journal
        out = b""
        if j is not None:
            out = store.reset_line(track.key) + j.all_lines() if not j.written else j.new_lines()
        state = track.state
        n = store.added_rows(track.logged_bars, state.bars)
        if n is None:
            return out + store.twin_line(track.key, track.snapshots.encode(state))
        return out + store.next_line(track.key, len(state.bars), live.rows_json(state.bars[n:]),
                                     state.to_dict_after_bars())

    def _whole(self, tracks: list[Track]) -> bytes:
        """The file rewritten: the models read from it that this process has not written, then every twin."""
        keys = {t.key for t in tracks}
        parts = [store.whole_lines(k, e) for k, e in (self.saved or {}).items() if k not in keys]
        for t in tracks:  # one join of every line (~20 MiB with 20 models' kept signals): not a copy per model
            parts.append(store.reset_line(t.key))
            if t.journal is not None:
                parts += t.journal.every_line()
            parts.append(store.twin_line(t.key, t.snapshots.encode(t.state)))
        return b"".join(parts)

    def _logged(self, track: Track) -> None:
        track.logged, track.logged_bars = True, track.state.bars  # a twin's bars are never changed in place
        if track.journal is not None:
            track.journal.now_written()
        if self.saved is not None:
            self.saved.pop(track.key, None)
        for path in track.legacy:  # the file holds the model now (fsynced): the files of before go
            path.unlink(missing_ok=True)
        track.legacy = []
        if track.error.startswith("cannot write"):
            track.error = ""

    def _write_failed(self, track: Track, problem: str) -> None:
        track.logged_bars = None  # a whole record at its next write
        if problem != track.error:
            self.alert("snapshot_write_failed", "warning", f"{track.symbol}: {problem}")
        track.error = problem

    # ---- REP and health ---------------------------------------------------------------------------
    def ops(self) -> dict:
        return {
            messages.OP_LAST_SIGNALS.name: self._op_last_signals,
            messages.OP_VIRTUAL_POSITIONS.name: self._op_virtual_positions,
            messages.OP_SIGNALS_SINCE.name: self._op_signals_since,
        }

    def _op_signals_since(self, args: messages.SignalsSinceArgs) -> messages.SignalsSince:
        signals, kept_from = [], {}
        for symbol, since in sorted(args.since.items()):
            if since is not None and (not isinstance(since, int) or isinstance(since, bool)):
                raise bus.OpError(wire.BAD_BODY,
                                  f"since[{shown(symbol)}] must be a bar time (int) or null, not {shown(since)}")
            track = self.tracks.get(symbol)
            if track is None or not track.warm or track.journal is None:
                continue
            signals += [messages.to_wire(s) for s in journal.after(track.journal.kept, since)]
            kept_from[symbol] = track.journal.kept_from
        return messages.SignalsSince(signals, kept_from)

    def _op_last_signals(self, _args: Any) -> messages.LastSignals:
        return messages.LastSignals({s: live.signal_of(s, t.state.last_decision)
                                     for s, t in self.tracks.items() if t.warm and t.state.last_decision is not None})

    def _op_virtual_positions(self, _args: Any) -> messages.VirtualPositions:
        return messages.VirtualPositions({s: live.position_view(s, t.timeframe, t.state)
                                          for s, t in self.tracks.items() if t.warm})

    def status_report(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "models": {
                s: messages.ModelStatus(
                    file=t.model.path.name, timeframe=t.timeframe, model_id=t.model.model_id, legacy=t.model.legacy,
                    warm=t.warm, restored=t.restored, last_bar=t.state.last_bar_time, decisions=t.state.decisions,
                    signals=t.signals,
                    last_bar_age_s=None if t.last_bar_wall is None else round(now - t.last_bar_wall, 1),
                    error=t.error)
                for s, t in self.tracks.items()},
            "errors": list(self.load_errors) + [f"{s}: {t.error}" for s, t in self.tracks.items() if t.error]
            + ([self.last_problem] if self.last_problem else []),
            "pending_bars": len(self.queue),
        }

    def health_info(self) -> dict:
        now = time.monotonic()
        info: dict = {"symbols": {s: {"timeframe": t.timeframe, "last_bar_age_s": round(now - t.last_bar_wall, 1)}
                                  for s, t in self.tracks.items() if t.last_bar_wall is not None}}
        if "preditor.load" in self.steps_done:  # its load result, for the orchestrator (ctl status, top, live models)
            info["models"] = sorted(self.tracks)
            if self.load_errors:
                info["refused_models"] = list(self.load_errors)
        return info

    def pending_work(self) -> int:
        return len(self.queue)

    def on_stop(self) -> None:
        self._publish_decided()
        self._write_snapshots()
        self._sync_snapshots()
        if self._connector is not None:
            self._connector.close()


def main(argv: list[str] | None = None) -> int:
    """``--shard n`` (supervisord's ``%(process_num)d``) picks the shard; the other options are every service's."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--shard", type=int, default=None)
    known, rest = p.parse_known_args(sys.argv[1:] if argv is None else argv)
    cls = type("Preditor", (Preditor,), {"shard": known.shard}) if known.shard is not None else Preditor
    try:
        return runtime.main(cls, rest)
    except programs.ShardError as exc:
        print(f"preditor: {exc}", file=sys.stderr)
        return 2
