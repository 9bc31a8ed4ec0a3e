"""The preditor's one file of snapshots and signals (services/preditor/store.py): relative records restore the
exact twin, a torn tail is cut, a twin record is never read without the signals written before it."""

from __future__ import annotations

import json

import pytest

from common import messages
from common.twin.twin import initial_state, run, step
from services.preditor import live, store
from services.preditor.model_file import load_model
from services.preditor.store import TwinLog


@pytest.fixture(scope="module")
def demo():
    return load_model("models/EURUSD_H1.zip")


def sig(t: int) -> messages.Signal:
    return messages.Signal("EURUSD", t, 1.1 + t / 1e6, 1, 1, 1, 0, 0.25, None, False)


def record(key: str, logged, state, encoder: live.SnapshotEncoder) -> bytes:
    """What the service writes for a twin (``Preditor._records`` without the signals)."""
    n = store.added_rows(logged, state.bars)
    if n is None:
        return store.twin_line(key, encoder.encode(state))
    return store.next_line(key, len(state.bars), live.rows_json(state.bars[n:]), state.to_dict_after_bars())


def test_relative_records_restore_the_twin_exactly(demo, eurusd_bars):
    state, _ = run(demo.spec, initial_state(demo.model_id), eurusd_bars[:400], demo.policy_fn)
    encoder, logged, data = live.SnapshotEncoder(), None, b""
    for i in range(400, 420):
        state, _ = step(demo.spec, state, live.twin_bar(messages.Bar("EURUSD", "H1", *eurusd_bars[i].tolist())),
                        demo.policy_fn)
        data += store.signal_lines("EURUSD_H1", [sig(int(eurusd_bars[i, 0]))])
        data += record("EURUSD_H1", logged, state, encoder)
        logged = state.bars.copy()
    assert data.count(b'"twin":') == 1 and data.count(b'"next":') == 19  # one whole record, then what changed
    saved, good = store.parse(data)
    assert good == len(data)
    back = live.restore(saved["EURUSD_H1"].snapshot, demo.model_id).state
    assert live.snapshot_bytes(back) == live.snapshot_bytes(state)
    assert [s.bar_time for s in saved["EURUSD_H1"].signals] == [int(t) for t in eurusd_bars[400:420, 0]]


def test_a_torn_tail_is_cut_and_the_next_write_rewrites_the_file(tmp_path, demo, eurusd_bars):
    state, _ = run(demo.spec, initial_state(demo.model_id), eurusd_bars[:400], demo.policy_fn)
    good = store.signal_lines("EURUSD_H1", [sig(3600)]) + store.twin_line("EURUSD_H1", live.snapshot_bytes(state))
    torn = store.signal_lines("EURUSD_H1", [sig(7200)])[:-20]  # a crash mid-append
    (tmp_path / store.LOG_NAME).write_bytes(good + torn)
    log = TwinLog(tmp_path, fsync=False)
    saved = log.load()
    assert [s.bar_time for s in saved["EURUSD_H1"].signals] == [3600]
    assert live.snapshot_bytes(live.restore(saved["EURUSD_H1"].snapshot, demo.model_id).state) == \
        live.snapshot_bytes(state)
    assert log.due(10)  # never appended after a torn line
    log.rewrite(good)
    assert not log.due(10)
    log.append(store.signal_lines("EURUSD_H1", [sig(7200)]))
    again = TwinLog(tmp_path, fsync=False).load()
    assert [s.bar_time for s in again["EURUSD_H1"].signals] == [3600, 7200]


def test_a_twin_record_after_a_torn_signal_is_not_read(demo, eurusd_bars):
    """Signals then snapshot in one write: a write cut in the signals (or a lost page among them) leaves the
    snapshot before, so the restart replays the bar whose signal was lost."""
    old, _ = run(demo.spec, initial_state(demo.model_id), eurusd_bars[:400], demo.policy_fn)
    new, _ = run(demo.spec, old, eurusd_bars[400:401], demo.policy_fn)
    before = store.twin_line("EURUSD_H1", live.snapshot_bytes(old))
    batch = store.signal_lines("EURUSD_H1", [sig(7200)]) + store.twin_line("EURUSD_H1", live.snapshot_bytes(new))
    lost_page = batch.replace(b'"bar_time":7200', b"\0" * len(b'"bar_time":7200'), 1)
    saved, good = store.parse(before + lost_page)
    assert good == len(before) and not saved["EURUSD_H1"].signals
    assert saved["EURUSD_H1"].snapshot["last_bar_time"] == old.last_bar_time


def test_a_reset_forgets_the_signals_and_other_models_are_kept_apart():
    data = (store.signal_lines("EURUSD_H1", [sig(3600)]) + store.signal_lines("GBPUSD_H1", [sig(3600)])
            + store.reset_line("EURUSD_H1") + store.signal_lines("EURUSD_H1", [sig(7200)]))
    saved, _ = store.parse(data)
    assert [s.bar_time for s in saved["EURUSD_H1"].signals] == [7200]
    assert [s.bar_time for s in saved["GBPUSD_H1"].signals] == [3600]
    assert store.parse(b"".join(store.whole_lines(k, e) for k, e in saved.items()))[0].keys() == saved.keys()


def test_an_append_without_its_sync_is_in_the_file_at_once_and_synced_later(tmp_path):
    """A burst of bars shares one fdatasync: each append is in the OS at once (a kill -9 loses nothing, the next
    process reads it), ``sync`` makes them durable; a synced append or a rewrite covers the unsynced ones too."""
    log = TwinLog(tmp_path, fsync=True)
    log.load()
    log.rewrite(store.signal_lines("EURUSD_H1", [sig(3600)]))
    assert not log.unsynced
    log.append(store.signal_lines("EURUSD_H1", [sig(7200)]), sync=False)
    log.append(store.signal_lines("EURUSD_H1", [sig(10800)]), sync=False)
    assert log.unsynced
    assert [s.bar_time for s in TwinLog(tmp_path, fsync=True).load()["EURUSD_H1"].signals] == [3600, 7200, 10800]
    log.sync()
    assert not log.unsynced
    log.append(store.signal_lines("EURUSD_H1", [sig(14400)]), sync=False)
    log.append(store.signal_lines("EURUSD_H1", [sig(18000)]))  # synced: the one before with it
    assert not log.unsynced
    unsynced_off = TwinLog(tmp_path, fsync=False)  # ``fsync_snapshots: false``: nothing ever waits for a sync
    assert len(unsynced_off.load()["EURUSD_H1"].signals) == 5
    unsynced_off.append(store.signal_lines("EURUSD_H1", [sig(21600)]), sync=False)
    assert not unsynced_off.unsynced


AWKWARD = [0.1 + 0.2, 1e-5, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0, 1e16, 123456789.0,
           1 / 3, -2.5e-7, 9007199254740993.0, 1.06474]


def test_orjson_lines_read_back_every_float_bit_for_bit(demo, eurusd_bars):
    """The snapshot's floats (orjson's shortest text) come back as the same float64, awkward ones included, and the
    state read back is the twin's to the bit (its array bytes and every float's bits)."""
    import struct

    state, _ = run(demo.spec, initial_state(demo.model_id), eurusd_bars[:400], demo.policy_fn)
    bars = state.bars.copy()
    bars[-2:, 1:] = [AWKWARD[:5], AWKWARD[5:10]]
    from dataclasses import replace

    odd = replace(state, bars=bars, realized_pnl=0.1 + 0.2)
    for twin in (state, odd):
        line = store.twin_line("EURUSD_H1", live.SnapshotEncoder().encode(twin))
        back = live.restore(store.parse(line)[0]["EURUSD_H1"].snapshot, demo.model_id).state
        assert back.bars.tobytes() == twin.bars.tobytes()
        assert struct.pack("<d", back.realized_pnl) == struct.pack("<d", twin.realized_pnl)
        assert back.last_decision == twin.last_decision and back.position == twin.position
        assert [struct.pack("<d", x) for x in back.last_decision.observation] == \
            [struct.pack("<d", x) for x in twin.last_decision.observation]
    for x in AWKWARD:
        assert struct.pack("<d", json.loads(live.dumps([x]))[0]) == struct.pack("<d", x)


def test_dumps_refuses_what_json_refuses_and_encodes_what_orjson_cannot():
    for bad in ([1.0, float("nan")], {"a": {"b": [float("inf")]}}, (float("-inf"),)):
        with pytest.raises(ValueError):
            live.dumps(bad)
    assert json.loads(live.dumps({"big": 2**70, "x": [1.5, None, True, "é"]})) == \
        {"big": 2**70, "x": [1.5, None, True, "é"]}


def test_a_file_written_by_the_json_encoder_of_before_is_read(demo, eurusd_bars):
    state, _ = run(demo.spec, initial_state(demo.model_id), eurusd_bars[:400], demo.policy_fn)
    old = (b'{"m":"EURUSD_H1","sig":' + live.to_json(messages.to_wire(sig(3600))).encode() + b"}\n"
           + b'{"m":"EURUSD_H1","twin":' + live.to_json(state.to_dict()).encode() + b"}\n")
    saved, good = store.parse(old)
    assert good == len(old) and list(saved["EURUSD_H1"].signals) == [sig(3600)]
    back = live.restore(saved["EURUSD_H1"].snapshot, demo.model_id).state
    assert live.snapshot_bytes(back) == live.snapshot_bytes(state)
    # a rewrite writes the signal lines again as they were read (not encoded anew)
    assert store.whole_lines("EURUSD_H1", saved["EURUSD_H1"]).startswith(
        store.reset_line("EURUSD_H1") + old.split(b"\n")[0] + b"\n")
