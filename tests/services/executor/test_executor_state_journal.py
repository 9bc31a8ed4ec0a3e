"""The executor's state on disk as snapshot and journal (state_file.py, common/durable.py JournaledState): a batch
of signals appends journal lines and leaves the snapshot alone; a state file of the format on main before the
journal is read and converted; a torn last journal line is dropped and the executor goes on."""

from __future__ import annotations

import json
import shutil

from common import durable, messages
from common.order_label import OrderAction, client_order_id
from services.executor import symbols_config as sc
from services.executor.sync import Direction, Stance
from tests.services.executor.test_executor_shell import H1, T0, Answered, Rig, final


def paths(rig: Rig):
    state = rig.root / "var" / "data" / "executor-state.json"
    return state, rig.root / "var" / "data" / "executor-state.json.journal"


def test_a_batch_of_signals_appends_to_the_journal_and_a_restart_reads_it_back(tmp_path):
    rig = Rig(tmp_path)
    try:
        rig.boot()
        snapshot, journal = paths(rig)
        before = snapshot.read_bytes()
        rig.signal(1, 0)
        assert final(rig.signal(2, 1)) == ("OK", "EDGE")  # an opening: written ahead, then landed
        assert snapshot.read_bytes() == before  # not rewritten
        entries = [json.loads(line) for line in journal.read_bytes().splitlines()]
        ahead, landed = entries[-2]["set"], entries[-1]["set"]
        cid = client_order_id("EURUSD", T0 + 2 * H1, OrderAction.OPEN)
        assert [i["open"]["client_order_id"] for i in ahead["intents"]] == [cid]  # durable before the order left
        assert landed["intents"] == [] and [a["client_order_id"] for a in landed["acks"]] == [cid]
        rig.restart()
        assert rig.ex.handled == {"EURUSD": T0 + 2 * H1}
        assert rig.ex.previous == {"EURUSD": Stance(Direction.LONG, 1)} and rig.ex._replay == []
    finally:
        rig.close()


def test_a_state_file_of_the_format_before_the_journal_is_read_and_converted(tmp_path):
    """As main wrote it (json.dumps of the version-2 object, no journal): every section carried over."""
    due = {"ticket": 7, "symbol": "EURUSD", "lots": 0.01, "client_order_id": "EURUSD-z-Cc", "reason": "SIGNAL_WAIT",
           "action": "CLOSE", "bar_time": T0, "since": 5.0, "state": "WAITING", "sent": 1}
    old = {"version": 2, "paused": True,
           "risk": {"session_start_balance": 10_000.0, "peak_equity": 10_100.0, "equity": 10_050.0,
                    "consecutive_losses": 2, "cooldown_until": None, "halted": False, "halt_reason": "",
                    "recent_close_ids": ["5"]},
           "last": {"EURUSD": {"bar_time": T0 + H1, "direction": -1, "intensity": 2}},
           "acks": [{"id": "a-1", "symbol": "EURUSD", "status": "OK"}], "intents": [], "v1_intents": [],
           "due_closes": [due]}
    (tmp_path / "var" / "data").mkdir(parents=True)
    (tmp_path / "var" / "data" / "executor-state.json").write_text(json.dumps(old))
    rig = Rig(tmp_path)
    try:
        ex = rig.ex
        assert ex.paused is True and ex.risk.consecutive_losses == 2 and ex.risk.peak_equity == 10_100.0
        assert ex.handled == {"EURUSD": T0 + H1} and ex.previous == {"EURUSD": Stance(Direction.SHORT, 2)}
        assert [d.ticket for d in ex.due.closes] == [7]
        assert ex.outbox.pending["a-1"] == ("acks", old["acks"][0])  # the last acks handed to persistence again
        converted = rig.state()  # written back at once as a snapshot of the journal's format
        assert converted["journal_seq"] == 0 and converted["due_closes"] == [due]
        assert {k: converted[k] for k in ("version", "paused", "risk", "last")} == {
            k: old[k] for k in ("version", "paused", "risk", "last")}
        rig.restart()
        assert rig.ex.paused is True and [d.ticket for d in rig.ex.due.closes] == [7]
    finally:
        rig.close()


def test_a_torn_last_journal_line_is_dropped_and_the_executor_goes_on(tmp_path, caplog):
    rig = Rig(tmp_path)
    try:
        rig.boot()
        rig.signal(1, 0)
        _snapshot, journal = paths(rig)
        whole = journal.read_bytes()
        # a kill while the next batch was written ahead: its line cut short, its orders never left
        torn = b'{"seq":99,"set":{"intents":[{"signal":{"symbol":"EURUSD","bar_time":'
        journal.write_bytes(whole + torn)
        with caplog.at_level("WARNING", logger="oracle.executor"):
            rig.restart()
        assert "not a whole entry" in caplog.text
        assert journal.read_bytes() == whole and rig.ex._replay == []
        assert rig.ex.handled == {"EURUSD": T0 + H1}
        rig.boot()
        assert final(rig.signal(2, 1)) == ("OK", "EDGE")  # the signal the torn batch had decided, decided again
        assert len(rig.connector.orders("order_open")) == 1
        rig.restart()
        assert rig.ex.handled == {"EURUSD": T0 + 2 * H1}
    finally:
        rig.close()


def test_a_command_shows_in_the_snapshot_at_once(tmp_path):
    rig = Rig(tmp_path)
    try:
        rig.boot()
        rig.signal(1, 0)
        rig.ex._op_command(messages.CommandArgs("pause"))
        snapshot = json.loads(paths(rig)[0].read_text())
        assert snapshot["paused"] is True and snapshot[durable.SEQ_KEY] >= 1
        assert snapshot["last"]["EURUSD"]["bar_time"] == T0 + H1  # the journal folded in
    finally:
        rig.close()


def test_the_acks_of_a_signal_with_no_order_are_spooled_not_written_in_the_state_and_survive_a_kill(tmp_path):
    """The acks of signals with no order go to the outbox's spool before the entry naming the signals decided; the
    state does not carry them again; a kill -9 after the batch leaves them to the next process."""
    rig = Rig(tmp_path)
    try:
        del rig.ex.persist  # the runtime's own: the records written through to the spool file
        rig.boot()
        [ack] = rig.signal(1, 0)  # a first signal, flat: no order
        entries = [json.loads(line) for line in paths(rig)[1].read_bytes().splitlines()]
        decided = entries[-1]["set"]
        assert decided["last"]["EURUSD"]["bar_time"] == T0 + H1
        assert decided.get("acks", []) == []  # not in the state...
        spool = tmp_path / "var" / "data" / "outbox" / "executor.jsonl"
        spooled = [json.loads(line) for line in spool.read_bytes().splitlines()]
        acks = [e["record"] for e in spooled if e["table"] == "acks"]
        assert [(a["symbol"], a["status"]) for a in acks] == [("EURUSD", ack.status)]  # ...but in the spool
        if rig.ex._store is not None:  # its write to persistence (none here) dies with the process
            rig.ex._store.sock.close(linger=0)
        restarted = rig.restart()  # kill -9: nothing acknowledged by persistence
        restarted._restore_outbox()  # as its run() does first
        assert restarted.outbox.pending[acks[0]["id"]] == ("acks", acks[0])
        assert restarted.handled == {"EURUSD": T0 + H1}  # decided once: not evaluated again
    finally:
        rig.close()


def test_a_journal_entry_holds_the_sections_that_changed_and_only_them(tmp_path):
    rig = Rig(tmp_path)
    try:
        rig.boot()
        _, journal = paths(rig)

        def entries() -> list[dict]:
            return [json.loads(line)["set"] for line in journal.read_bytes().splitlines()]

        rig.signal(1, 0)
        assert final(rig.signal(2, 1)) == ("OK", "EDGE")  # an opening: written ahead, then landed
        ahead, landed = entries()[-2:]
        assert {"last", "intents"} <= set(ahead)  # the stance decided and the order written ahead
        assert "intents" in landed and "last" not in landed  # the order landed; the stance is the same
        assert all(not set(e) & {"version", "paused", "due_closes", "v1_intents"} for e in entries())
        n = len(entries())
        rig.hear(messages.AccountUpdate(10_000.0, 10_050.0, 11.0, 10_039.0, "USD"))  # a new equity peak
        rig.turn()
        assert len(entries()) == n + 1 and entries()[-1]["risk"]["peak_equity"] == 10_050.0
        assert set(entries()[-1]) == {"risk"}
        rig.restart()
        assert rig.ex.risk.peak_equity == 10_050.0 and rig.ex.handled == {"EURUSD": T0 + 2 * H1}
    finally:
        rig.close()


def test_the_acks_of_a_batch_with_orders_are_written_ahead_with_them_spooled_after_and_survive_a_kill_between(
        tmp_path):
    """A batch with an order: the acks of its signals with no order are in the entry written ahead of the orders
    (fdatasynced with it) and reach the spool only once the orders left, so nothing of them is on the path to the
    orders. A kill -9 between the two (the data directory as the orders leave, restarted) hands every one of them
    to persistence once, under the first process's ids, and evaluates none of their signals again."""
    rig = Rig(tmp_path)
    data = tmp_path / "var" / "data"
    spool = data / "outbox" / "executor.jsonl"
    left = tmp_path / "left"  # the disk as a kill -9 at the orders' leaving would leave it
    try:
        del rig.ex.persist  # the runtime's own: the records written through to the spool file
        rig.boot()
        ex = rig.ex
        ex.modelled.add("GBPUSD")
        ex.timeframes.update(EURUSD="H1", GBPUSD="H1")
        ex.config, _ = sc.ensure_symbols(ex.config, ex.modelled)
        rig.signal(1, 0)
        base = len(spooled_acks(spool))

        class LeavingNow(Answered):
            def __init__(self, connector, requests):
                super().__init__(connector, requests)  # the orders are out
                shutil.copytree(tmp_path, left, symlinks=True, ignore=shutil.ignore_patterns("left"))

        ex._group = lambda requests: LeavingNow(rig.connector, requests)  # type: ignore[method-assign]
        bar = T0 + 2 * H1
        rig.hear(messages.Signal("EURUSD", bar, 1.1, 1, 1, 1, 2, 0.0), "preditor")  # an edge: an opening
        rig.hear(messages.Signal("GBPUSD", bar, 1.1, 0, 0, 0, 2, 0.0), "preditor")  # flat, waits: no order
        ex._decide_waiting()
        ex._wait_flights()
        cid = client_order_id("EURUSD", bar, OrderAction.OPEN)
        [ahead] = [e["set"] for e in journal_entries(left) if e["set"].get("intents")]
        assert [i["open"]["client_order_id"] for i in ahead["intents"]] == [cid]
        [gbp] = ahead["acks"]  # the no-order ack, written ahead with the order...
        assert (gbp["symbol"], gbp["decision"], gbp["reason"]) == ("GBPUSD", "NOOP", "FLAT")
        assert len(spooled_acks(left / "var" / "data" / "outbox" / "executor.jsonl")) == base  # ...not spooled yet
        after = spooled_acks(spool)[base:]  # the process that lived: spooled once the order was out, then landed
        assert [a["id"] for a in after].count(gbp["id"]) == 1 and [a["client_order_id"] for a in after] == [None, cid]

        killed = Rig(left, rig.connector)  # the kill -9 in the window: a new process on what it left
        try:
            killed.ex._restore_outbox()  # as its run() does first
            pending = [r for t, r in killed.ex.outbox.pending.values() if t == "acks" and r["bar_time"]]
            assert [r for r in pending if r["symbol"] == "GBPUSD" and r["id"] == gbp["id"]] == [gbp]
            assert killed.ex.handled["GBPUSD"] == bar  # decided once: not evaluated again under a new epoch
            assert [i["open"]["client_order_id"] for i in killed.ex._replay] == [cid]  # its order goes again
        finally:
            killed.close()
    finally:
        if rig.ex._store is not None:  # its write to persistence (none here)
            rig.ex._store.sock.close(linger=0)
        rig.close()


def test_the_entry_written_ahead_of_orders_does_not_fold_a_full_journal_the_landing_does(tmp_path):
    """A snapshot costs three fsyncs: not while the orders wait for it."""
    rig = Rig(tmp_path)
    try:
        rig.boot()
        rig.signal(1, 0)
        snapshot, journal = paths(rig)
        rig.ex.store.compact_bytes = 1  # the journal is full from the next entry on
        seen = []

        class Leaving(Answered):
            def __init__(self, connector, requests):
                seen.append((json.loads(snapshot.read_text()), journal.read_bytes().splitlines()))
                super().__init__(connector, requests)

        rig.ex._group = lambda requests: Leaving(rig.connector, requests)  # type: ignore[method-assign]
        compactions = rig.ex.store.compactions
        assert final(rig.signal(2, 1)) == ("OK", "EDGE")
        [(before, entries)] = seen
        cid = client_order_id("EURUSD", T0 + 2 * H1, OrderAction.OPEN)
        assert [i["open"]["client_order_id"] for i in json.loads(entries[-1])["set"]["intents"]] == [cid]
        assert before["intents"] == []  # the snapshot is not the write-ahead
        assert rig.ex.store.compactions == compactions + 1  # the landing folded it
        assert rig.state()["intents"] == [] and journal.read_bytes() == b""
    finally:
        rig.close()

def spooled_acks(spool) -> list[dict]:
    if not spool.exists():
        return []
    return [e["record"] for e in map(json.loads, spool.read_bytes().splitlines()) if e["table"] == "acks"]


def journal_entries(root) -> list[dict]:
    return [json.loads(line) for line in (root / "var" / "data" / "executor-state.json.journal").read_bytes()
            .splitlines()]
