"""The preditor process's shell: refused models, one model per symbol, snapshots of another model, alerts, health
facts, and a gap that history cannot fill yet (the bar waits, never predicted on a hole). The connector is the
protocol-level stand-in of tests/system/preditor_rig.py."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time

import pytest
from harness import REPO, Home, wait_for
from system.preditor_rig import SignalTap, StandInConnector, copy_model_as, start_preditor

from common import messages
from common.twin.bars import load_bars_csv

DEMO = REPO / "models" / "EURUSD_H1.zip"


@pytest.fixture(scope="module")
def bars():
    return load_bars_csv(REPO / "data" / "EURUSD_H1_2017.csv")


def make_home(tmp_path, overlay: dict) -> Home:
    home = Home(tmp_path, overlay)
    (tmp_path / "var" / "run").mkdir(parents=True, exist_ok=True)
    return home


def test_bad_and_duplicate_models_are_refused_and_alerted_the_others_run(tmp_path, bars):
    models = tmp_path / "mymodels"
    models.mkdir()
    shutil.copy(DEMO, models / "EURUSD_H1.zip")
    shutil.copy(DEMO, models / "EURUSD_H1_v2.zip")  # a second model for EURUSD
    copy_model_as(DEMO, models, "GBPUSD")
    (models / "BROKEN_H1.zip").write_bytes(b"PK\x03\x04 not really a zip")
    snaps = tmp_path / "var" / "data" / "preditor"
    snaps.mkdir(parents=True)
    (snaps / "GBPUSD_H1.twin.json").write_text(json.dumps({"version": 1, "model_id": "feedfacefeedface"}))
    home = make_home(tmp_path, {"preditor": {"models_dir": str(models)}})
    cfg = home.config()
    conn = StandInConnector(cfg, bars, {"EURUSD": "H1", "GBPUSD": "H1"}, cursor=1000)
    tap = SignalTap(cfg, ("signal.", "alert.", "hb."))
    try:
        steps = start_preditor(home)
        refused = steps["load"]["refused"]
        assert len(refused) == 2
        assert any(r.startswith("BROKEN_H1.zip: ") and "zip" in r for r in refused)
        dup = "EURUSD_H1_v2.zip: refused: EURUSD already has the model EURUSD_H1.zip"
        assert any(r.startswith(dup) for r in refused)
        assert set(steps["load"]["models"]) == {"EURUSD", "GBPUSD"}
        warm = steps["warmup"]["warmed_up"]
        assert warm["EURUSD"]["restored"] == "no snapshot"
        assert warm["GBPUSD"]["restored"].startswith("snapshot discarded: twin snapshot belongs to model")
        assert {s: a.since for s, a in ((a.symbol, a) for op, a in conn.requests if op == "subscribe")} == {
            "EURUSD": int(bars[999, 0]), "GBPUSD": int(bars[999, 0])}

        conn.publish(1000)
        eur = tap.wait_for("EURUSD", int(bars[1000, 0]))
        gbp = tap.wait_for("GBPUSD", int(bars[1000, 0]))
        assert eur == messages.Signal("EURUSD", *(getattr(gbp, f) for f in messages.Signal.__dataclass_fields__
                                                   if f != "symbol"))  # same model, same bars, same signal
        alerts = [r.envelope.body for r in tap.other if r.envelope.topic == "alert.model_refused"]
        assert sorted(a.message for a in alerts) == sorted(refused) and all(a.severity == "critical" for a in alerts)

        def beat():
            hbs = [r.envelope.body for r in tap.other if r.envelope.topic == "hb.preditor"]
            hb = hbs[-1] if hbs else None
            return hb if hb and hb.progress.get("signals_sent") == 2 else None
        hb = wait_for(beat, 5, "a heartbeat after the bar")
        assert set(hb.info["symbols"]) == {"EURUSD", "GBPUSD"} and hb.pending == 0
        assert all(f["timeframe"] == "H1" and 0 <= f["last_bar_age_s"] < 5 for f in hb.info["symbols"].values())
        assert hb.progress["bars_seen"] == 2

        status = home.status_of("preditor")
        assert set(refused) <= set(status["errors"])
        assert status["models"]["GBPUSD"]["warm"] and status["models"]["EURUSD"]["file"] == "EURUSD_H1.zip"
        last = home.request("preditor", "last_signals").signals
        # read back later, a signal does not say the decision before it (the live one did)
        assert eur.previous_direction is not None
        assert set(last) == {"EURUSD", "GBPUSD"} and last["EURUSD"] == dataclasses.replace(eur, previous_direction=None)
        assert set(home.request("preditor", "virtual_positions").positions) == {"EURUSD", "GBPUSD"}
    finally:
        tap.close()
        conn.close()
        home.close()


def test_a_gap_history_cannot_fill_keeps_the_bar_pending_until_it_can(tmp_path, bars):
    home = make_home(tmp_path, {"preditor": {"gap_retry_s": 0.3}})
    cfg = home.config()
    conn = StandInConnector(cfg, bars, {"EURUSD": "H1"}, cursor=1000)
    tap = SignalTap(cfg, ("signal.", "alert."))
    try:
        start_preditor(home)
        conn.publish(1000)
        tap.wait_for("EURUSD", int(bars[1000, 0]))
        conn.close_bar(1001)  # lost
        conn.fail_history = True
        conn.publish(1002)
        wait_for(lambda: [r for r in tap.other if r.envelope.topic == "alert.gap_not_filled"], 5, "the alert")
        status = home.status_of("preditor")
        assert status["pending_bars"] == 1 and "not available" in status["errors"][-1]
        time.sleep(1.0)  # retried meanwhile, still failing: nothing predicted on the hole
        assert ("EURUSD", int(bars[1002, 0])) not in tap.by_key
        conn.fail_history = False
        tap.wait_for("EURUSD", int(bars[1002, 0]), timeout=5)
        assert ("EURUSD", int(bars[1001, 0])) in tap.by_key  # filled from history, signalled, in order
        assert [s.bar_time for s in tap.signals] == [int(bars[i, 0]) for i in (1000, 1001, 1002)]
        status = home.status_of("preditor")
        assert status["pending_bars"] == 0 and status["errors"] == []
    finally:
        tap.close()
        conn.close()
        home.close()


def test_a_snapshot_older_than_the_history_is_discarded_and_the_twin_starts_flat(tmp_path, bars):
    import torch

    from common.twin.twin import initial_state, run
    from services.preditor import backtest, live
    from services.preditor.model_file import load_model

    torch.set_num_threads(1)
    model = load_model(DEMO)
    old, _ = run(model.spec, initial_state(model.model_id), bars[:400], model.policy_fn)  # ends at bar 399
    snaps = tmp_path / "var" / "data" / "preditor"
    snaps.mkdir(parents=True)
    (snaps / "EURUSD_H1.twin.json").write_bytes(live.snapshot_bytes(old))
    home = make_home(tmp_path, {})
    cfg = home.config()
    conn = StandInConnector(cfg, bars, {"EURUSD": "H1"}, cursor=1500)  # history: bars 500..1499, a hole after 399
    tap = SignalTap(cfg, ("signal.", "alert."))
    try:
        warm = start_preditor(home)["warmup"]["warmed_up"]["EURUSD"]
        assert "older than the history" in warm["restored"] and warm["from_bar"] is None
        assert [r for r in tap.other if r.envelope.topic == "alert.twin_restarted_flat"]
        conn.publish(1500)
        sig = tap.wait_for("EURUSD", int(bars[1500, 0]))
        d = backtest.replay(model, bars[500:1501])[-1]  # a twin started flat at the first history bar
        assert (sig.action, sig.hmm_state) == (int(d.action), d.hmm_state)
        assert abs(sig.virtual_pnl - d.floating_pnl) <= 1e-9
    finally:
        tap.close()
        conn.close()
        home.close()


def test_a_snapshot_that_cannot_be_written_is_alerted_and_signals_go_on(tmp_path, bars):
    home = make_home(tmp_path, {})
    blocker = tmp_path / "var" / "data" / "preditor"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the snapshot directory should be")
    cfg = home.config()
    conn = StandInConnector(cfg, bars, {"EURUSD": "H1"}, cursor=1000)
    tap = SignalTap(cfg, ("signal.", "alert."))
    try:
        start_preditor(home)
        conn.publish(1000)
        tap.wait_for("EURUSD", int(bars[1000, 0]))  # the signal first; the snapshot's write after (SNAPSHOT_AFTER_S)
        wait_for(lambda: any("cannot write the twin snapshot" in e for e in home.status_of("preditor")["errors"]), 5,
                 "the write's error in the status")
        assert [r for r in tap.other if r.envelope.topic == "alert.snapshot_write_failed"]
        blocker.unlink()
        conn.publish(1001)
        tap.wait_for("EURUSD", int(bars[1001, 0]))
        wait_for(lambda: (blocker / "twins.jsonl").exists(), 5, "the snapshot (written after the signal)")
        wait_for(lambda: home.status_of("preditor")["errors"] == [], 5, "the error cleared")
    finally:
        tap.close()
        conn.close()
        home.close()


def test_a_lost_friday_bar_is_filled_thanks_to_the_stream_gap(tmp_path, bars):
    """Bar 1079 (Friday 21:00, the week's last) is lost: its absence looks like the weekly close in bar times, but
    the bar topic's sequence gap makes the twin ask history at Sunday's first bar."""
    import torch

    from services.preditor import backtest
    from services.preditor.model_file import load_model

    torch.set_num_threads(1)
    home = make_home(tmp_path, {})
    cfg = home.config()
    conn = StandInConnector(cfg, bars, {"EURUSD": "H1"}, cursor=1078)
    tap = SignalTap(cfg)
    try:
        start_preditor(home)
        conn.publish(1078)
        tap.wait_for("EURUSD", int(bars[1078, 0]))
        conn.close_bar(1079)
        conn.pub.seqs["bar.EURUSD.H1"] += 1  # published, then lost on the way: a hole in the topic's seq
        conn.publish(1080)
        tap.wait_for("EURUSD", int(bars[1080, 0]))
        assert ("EURUSD", int(bars[1079, 0])) in tap.by_key
        asks = conn.history_requests()
        assert (asks[-1].since, asks[-1].until) == (int(bars[1078, 0]), int(bars[1080, 0]))
        exp = {d.bar_time: d for d in backtest.replay(load_model(DEMO), bars[78:1081])}
        for i in (1078, 1079, 1080):
            sig, d = tap.by_key[("EURUSD", int(bars[i, 0]))], exp[int(bars[i, 0])]
            assert (sig.action, sig.hmm_state) == (int(d.action), d.hmm_state)
            assert abs(sig.virtual_pnl - d.floating_pnl) <= 1e-9
    finally:
        tap.close()
        conn.close()
        home.close()


def test_the_per_model_files_of_before_are_read_once_and_kept_in_the_one_file_across_a_kill9(tmp_path, bars):
    """Upgrade: a snapshot and signal journal in the per-model format of before are restored, moved into
    twins.jsonl and removed; after a kill -9 the twin and its signals come back from the new file."""
    import signal as signals_

    import torch

    from common.twin.twin import initial_state, run
    from services.preditor import journal, live
    from services.preditor.model_file import load_model

    torch.set_num_threads(1)
    model = load_model(DEMO)
    old, decisions = run(model.spec, initial_state(model.model_id), bars[:996], model.policy_fn)  # ends at 995
    snaps = tmp_path / "var" / "data" / "preditor"
    snaps.mkdir(parents=True)
    legacy = [snaps / "EURUSD_H1.twin.json", snaps / "EURUSD_H1.signals.jsonl"]
    legacy[0].write_bytes(live.snapshot_bytes(old))
    legacy[1].write_bytes(journal.lines_of([live.signal_of("EURUSD", d) for d in decisions[-6:]]))  # 990..995
    home = make_home(tmp_path, {})
    conn = StandInConnector(home.config(), bars, {"EURUSD": "H1"}, cursor=1000)
    tap = SignalTap(home.config())

    def kept() -> list[int]:
        res = home.request("preditor", messages.OP_SIGNALS_SINCE.name, messages.SignalsSinceArgs({"EURUSD": 0}))
        return [s["bar_time"] if isinstance(s, dict) else s.bar_time for s in res.signals]

    want = [int(t) for t in bars[990:1000, 0]]  # the journal's, then the catch-up of 996..999
    try:
        warm = start_preditor(home)["warmup"]["warmed_up"]["EURUSD"]
        assert warm["restored"] == f"snapshot restored at bar {int(bars[995, 0])}" and warm["caught_up"] == 4
        assert kept() == want
        assert not any(p.exists() for p in legacy) and (snaps / "twins.jsonl").exists()
        home.kill("preditor", signals_.SIGKILL)
        legacy[0].write_bytes(live.snapshot_bytes(old))  # as if a crash came before its removal: the file wins
        again = start_preditor(home)["warmup"]["warmed_up"]["EURUSD"]
        assert again["restored"] == f"snapshot restored at bar {int(bars[999, 0])}" and again["caught_up"] == 0
        assert kept() == want and not legacy[0].exists()
    finally:
        tap.close()
        conn.close()
        home.close()
