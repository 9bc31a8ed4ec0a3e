"""What paper stores: one OPEN record per position opened and one CLOSE record per trade, the same whether made as the
signals come or re-sent from the book after a restart."""

from __future__ import annotations

from common.records.trades import PaperOpening
from common.twin.position import CostModel
from services.paper.account import new_account, on_signal
from services.paper.service import book_records, opening_record, trade_record

# (direction, intensity, close) per H1 bar: long, kept, reversed to a stronger short, flat, long again (left open)
SIGNALS = [(1, 1, 1.1000), (1, 1, 1.1010), (-1, 2, 1.1020), (0, 0, 1.1000), (0, 0, 1.0990), (1, 3, 1.0980)]


def run() -> tuple[object, list[dict]]:
    account = new_account("EURUSD", CostModel())
    live: list[dict] = []
    for i, (direction, intensity, close) in enumerate(SIGNALS):
        step = on_signal(account, direction, intensity, close, 3600 * (i + 1), hmm_state=1)
        account = step.account
        if step.closed is not None:
            live.append(trade_record(step.closed, "H1"))
        if step.opened is not None:
            live.append(opening_record(step.opened, "H1"))
    return account, live


def test_each_opening_and_each_close_is_one_record():
    _, live = run()
    assert [(r["action"], r["direction"], r["bar_time"][11:16]) for r in live] == [
        ("OPEN", 1, "01:00"), ("CLOSE", 1, "03:00"), ("OPEN", -1, "03:00"), ("CLOSE", -1, "04:00"),
        ("OPEN", 1, "06:00")]
    assert all(r["is_paper"] and r["session_id"] == "" for r in live)
    opens = [r for r in live if r["action"] == "OPEN"]
    assert [r["volume"] for r in opens] == [0.01, 0.03, 0.05]  # the training lots of intensities 1, 2, 3
    assert all(r["pnl"] == 0.0 and r["commission"] == 0.0 and r["exit_price"] is None for r in opens)
    assert len({r["id"] for r in live}) == len(live)


def test_the_books_records_after_a_restart_are_the_live_ones():
    account, live = run()
    assert sorted(book_records(account, "H1"), key=lambda r: r["id"]) == sorted(live, key=lambda r: r["id"])


def test_an_opening_read_back_from_its_trade_is_the_live_one():
    account, _ = run()
    first = account.trades[0]
    assert first.opening() == PaperOpening("EURUSD", 1, 1, 0.01, 3600, first.entry_price)
