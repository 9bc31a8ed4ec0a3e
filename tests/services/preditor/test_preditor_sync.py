"""When the preditor writes and fdatasyncs its snapshots (the service object of this process, its loop's ``on_tick``
driven by hand on a stand-in clock; real models, real file, real PUB socket): a bar time that came after a pause
(a live close) is written and synced in one turn ``SNAPSHOT_AFTER_S`` after its bars were stepped (after the
close's orders), its signals out at once; a burst of bar times is written as it goes and shares one fdatasync
once no bar came for ``SYNC_LINGER_S``. Either way the write is in the OS before the turn that made it ends."""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import pytest
from harness import REPO, Home
from system.preditor_rig import copy_model_as

from common import bus, messages
from common.twin.bars import load_bars_csv
from common.twin.twin import initial_state, run

SYMBOLS = ("EURUSD", "GBPUSD")


@pytest.fixture
def preditor(tmp_path, monkeypatch):
    from services.preditor import service, store
    from services.preditor.journal import Journal

    models = tmp_path / "test_models"
    models.mkdir()
    for s in SYMBOLS:
        copy_model_as(REPO / "models" / "EURUSD_H1.zip", models, s)
    home = Home(tmp_path, {"preditor": {"models_dir": str(models)}})
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(service, "time", SimpleNamespace(monotonic=lambda: clock.now))
    svc = service.Preditor(home.config())
    svc._next_hb = math.inf  # no heartbeat: no orchestrator here
    svc._load()
    svc.saved = {}
    bars = load_bars_csv(REPO / "data" / "EURUSD_H1_2017.csv")
    first = next(iter(svc.tracks.values()))
    warm, _ = run(first.model.spec, initial_state(first.model.model_id), bars[:400], first.model.policy_fn)
    for t in svc.tracks.values():
        t.state, t.warm = warm, True
        t.journal = Journal(line=functools.partial(store.signal_line, t.key))
        t.journal.reset()
    svc.pub = bus.Publisher(svc.ctx, f"ipc://{tmp_path}/preditor-test.pub", svc.name, svc.epoch)
    svc._write_snapshots()
    svc._sync_snapshots()
    try:
        yield svc, clock, bars
    finally:
        svc.pub.close()
        svc.ctx.term()
        home.close()


def close_bar(svc, clock, bars, i: int, after_s: float) -> None:
    """The bars of bar time ``i`` for every symbol, queued ``after_s`` after the last turn, then a turn of the
    loop once their gathering is over."""
    clock.now += after_s
    for s in SYMBOLS:
        svc.queue.append(messages.Bar(s, "H1", int(bars[i, 0]), *(float(x) for x in bars[i, 1:])))
    svc.queued_since = clock.now
    clock.now += 0.003  # past GATHER_MAX_S
    svc.on_tick(clock.now)


def test_a_bar_time_after_a_pause_is_written_and_synced_after_its_orders_a_burst_shares_one_sync(preditor):
    from services.preditor.service import SNAPSHOT_AFTER_S, SYNC_LINGER_S

    svc, clock, bars = preditor
    close_bar(svc, clock, bars, 400, after_s=3600.0)
    assert svc.progress.get("signals_sent") == 2 and svc.unsaved and not svc.log.unsynced  # signals out, no write yet
    assert 0 < svc.poll_timeout_ms() <= SNAPSHOT_AFTER_S * 1000 + 1  # the loop wakes for the write
    clock.now += SNAPSHOT_AFTER_S + 0.001  # the loop wakes a ms past the due time (poll_timeout_ms)
    svc.on_tick(clock.now)
    assert not svc.unsaved and not svc.log.unsynced  # written and fdatasynced in the same turn
    close_bar(svc, clock, bars, 401, after_s=3600.0)
    clock.now += SNAPSHOT_AFTER_S + 0.001  # the loop wakes a ms past the due time (poll_timeout_ms)
    svc.on_tick(clock.now)
    assert not svc.unsaved and not svc.log.unsynced
    close_bar(svc, clock, bars, 402, after_s=3600.0)  # a burst's first bar time: its write waits, as a close's
    assert svc.unsaved and not svc.log.unsynced
    close_bar(svc, clock, bars, 403, after_s=0.001)  # the next bar time right after: a burst
    assert not svc.unsaved and svc.log.unsynced  # written (in the OS), the sync waits for the burst's end
    close_bar(svc, clock, bars, 404, after_s=0.001)
    assert not svc.unsaved and svc.log.unsynced
    clock.now += SYNC_LINGER_S
    svc.on_tick(clock.now)
    assert not svc.log.unsynced and svc.progress.get("signals_sent") == 10


def written_bar_times(svc) -> dict[str, int]:
    """The bar time of each model's last signal in the file (its snapshot is written right after it)."""
    from services.preditor import store

    if not svc.log.path.exists():
        return {}
    saved, _ = store.parse(svc.log.path.read_bytes())
    return {key: entry.signals[-1].bar_time for key, entry in saved.items() if entry.signals}


def test_closes_coming_faster_than_the_snapshot_wait_each_write_the_one_before_first(preditor):
    """A stream of closes 25 ms apart (a pause each, shorter than ``SNAPSHOT_AFTER_S``): the closes' waits would
    chain and nothing would be written while it lasts; a kill -9 must replay the last bar time only."""
    from services.preditor.service import SNAPSHOT_AFTER_S, SYNC_LINGER_S

    svc, clock, bars = preditor
    gap = (SYNC_LINGER_S + SNAPSHOT_AFTER_S) / 2
    close_bar(svc, clock, bars, 400, after_s=3600.0)
    for i in range(401, 411):
        close_bar(svc, clock, bars, i, after_s=gap - 0.003)
        assert svc.unsaved, i  # this close's own write still waits for its orders
        assert set(written_bar_times(svc).values()) == {int(bars[i - 1, 0])}, i  # the close before is in the file
    clock.now += SNAPSHOT_AFTER_S + 0.001
    svc.on_tick(clock.now)
    assert not svc.unsaved and not svc.log.unsynced
    assert set(written_bar_times(svc).values()) == {int(bars[410, 0])}
