"""The paper book on disk: a small state file replaced atomically plus an append-only journal of the history.

Saving costs O(what changed since the last save), never O(history): the growing parts of an account (its closed
trades and its equity curve) are appended to `<state>.journal.jsonl`, one JSON line per trade or equity point, and
the state file keeps the rest (balance, position, last bar, costs) and, per account, how many trades and equity
points of the journal belong to it, plus the journal's length in bytes.

A save is: append the new lines, fsync the journal, then write the state to a temporary file, fsync, rename it
over the state file. The rename is the commit point. A kill -9 before it leaves the previous state, and journal
lines past the length that state records: the load cuts them off (they are re-made when the signals they came
from are applied again). The journal is therefore never read past a committed length, and what is loaded is
exactly the book of the last committed save.

Version 1 state files (the whole book in one JSON file, before this journal) are loaded as they are; the next save
writes their whole history to a fresh journal and the state as version 2 (the rename commits that migration too).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from common import durable
from common.twin.position import CostModel
from services.paper.account import History, PaperAccount, PaperBook, PaperTrade

STATE_VERSION = 2
LEGACY_VERSION = 1


class StateError(ValueError):
    """The saved book cannot be read; the message names the file."""


def journal_path(state_path: Path) -> Path:
    name = state_path.name[:-len(".json")] if state_path.name.endswith(".json") else state_path.name
    return state_path.with_name(name + ".journal.jsonl")


class BookStore:
    def __init__(self, state_path: Path):
        self.state_path = state_path
        self.journal = journal_path(state_path)
        self.saved: dict[str, tuple[int, int]] = {}  # symbol -> (trades, equity points) already in the journal
        self.journal_bytes = 0
        self.legacy = False  # the last load read a version 1 file

    # ---- load -------------------------------------------------------------------------------
    def load(self) -> PaperBook | None:
        """The book of the last committed save, or None when there is none. StateError names the bad file."""
        try:
            raw = self.state_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"paper state {self.state_path} unreadable: {exc}") from None
        try:
            data = json.loads(raw)
            version = data.get("version")
        except (ValueError, AttributeError) as exc:
            raise StateError(f"paper state {self.state_path} unreadable: {exc}") from None
        if version == LEGACY_VERSION:
            try:
                book = PaperBook.from_dict(data)
            except (ValueError, KeyError, TypeError) as exc:
                raise StateError(f"paper state {self.state_path} (version 1) unreadable: {exc}") from None
            self.legacy = True
            self.saved, self.journal_bytes = {}, 0
            self._cut_journal(0)  # a migration killed before its commit left a journal no state refers to
            return book
        if version != STATE_VERSION:
            raise StateError(f"paper state {self.state_path}: version {version!r}, expected {STATE_VERSION} (or "
                             f"{LEGACY_VERSION})")
        try:
            length = int(data["journal_bytes"])
            accounts = data["accounts"]
            counts = {s: (int(a["trades"]), int(a["equity_points"])) for s, a in accounts.items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(f"paper state {self.state_path} unreadable: {exc}") from None
        history = self._read_journal(length, counts)
        try:
            book = PaperBook({s: _account(a, *history[s]) for s, a in accounts.items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"paper state {self.state_path} unreadable: {exc}") from None
        self.legacy = False
        self.saved, self.journal_bytes = counts, length
        return book

    def _read_journal(self, length: int, counts: dict[str, tuple[int, int]]
                      ) -> dict[str, tuple[list[PaperTrade], list[float]]]:
        try:
            size = self.journal.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < length:
            raise StateError(f"paper journal {self.journal} has {size} bytes, the state file {self.state_path} "
                             f"committed {length}: the history is incomplete")
        if size > length:
            self._cut_journal(length)  # lines of a save that was never committed
        history: dict[str, tuple[list[PaperTrade], list[float]]] = {s: ([], []) for s in counts}
        data = b""
        if length:
            with open(self.journal, "rb") as f:
                data = f.read(length)
        for number, line in enumerate(data.splitlines(), start=1):
            try:
                entry = json.loads(line)
                trades, equity = history[entry["s"]]
                if "e" in entry:
                    equity.append(float(entry["e"]))
                else:
                    trades.append(PaperTrade.from_dict(entry["t"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise StateError(f"paper journal {self.journal} line {number} unreadable: {exc}") from None
        for symbol, (n_trades, n_equity) in counts.items():
            trades, equity = history[symbol]
            if (len(trades), len(equity)) != (n_trades, n_equity):
                raise StateError(f"paper journal {self.journal}: {symbol} has {len(trades)} trades and "
                                 f"{len(equity)} equity points, the state file {self.state_path} committed "
                                 f"{n_trades} and {n_equity}")
        return history

    def _cut_journal(self, length: int) -> None:
        try:
            with open(self.journal, "r+b") as f:
                f.truncate(length)
                f.flush()
                os.fsync(f.fileno())
        except FileNotFoundError:
            pass

    # ---- save -------------------------------------------------------------------------------
    def save(self, book: PaperBook) -> None:
        """Commit the book: its new history to the journal, then the state file. O(what changed)."""
        lines: list[bytes] = []
        counts: dict[str, tuple[int, int]] = {}
        for symbol, account in sorted(book.accounts.items()):
            n_trades, n_equity = self.saved.get(symbol, (0, 0))
            for t in account.trades[n_trades:]:
                lines.append(_line({"s": symbol, "t": t.to_dict()}))
            for e in account.equity_curve[n_equity:]:
                lines.append(_line({"s": symbol, "e": e}))
            counts[symbol] = (len(account.trades), len(account.equity_curve))
        length = self.journal_bytes
        if lines:
            blob = b"".join(lines)
            fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.lseek(fd, length, os.SEEK_SET)  # over any tail of an uncommitted save
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view):]
                os.ftruncate(fd, length + len(blob))
                os.fsync(fd)
            finally:
                os.close(fd)
            length += len(blob)
        state = {"version": STATE_VERSION, "journal": self.journal.name, "journal_bytes": length,
                 "accounts": {s: _state_of(book.accounts[s], *counts[s]) for s in sorted(book.accounts)}}
        durable.write_atomic(self.state_path, json.dumps(state))  # the commit (json.dumps: the C encoder)
        self.saved, self.journal_bytes, self.legacy = counts, length, False


def _line(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, separators=(",", ":")) + "\n").encode()


def _state_of(account: PaperAccount, n_trades: int, n_equity: int) -> dict[str, Any]:
    """`PaperAccount.to_dict()` without the history (which it would serialise whole): its lengths instead."""
    p = account.position
    return {"symbol": account.symbol, "costs": _costs(account.costs), "balance": account.balance,
            "position": {"direction": p.direction, "intensity": p.intensity, "entry_price": p.entry_price,
                         "entry_time": p.entry_time, "floating_pnl": p.floating_pnl},
            "last_bar_time": account.last_bar_time, "last_price": account.last_price,
            "trades": n_trades, "equity_points": n_equity}


@functools.lru_cache(maxsize=256)
def _costs(costs: CostModel) -> dict[str, Any]:
    return {**asdict(costs), "lot_sizes": list(costs.lot_sizes)}


def _account(data: dict[str, Any], trades: list[PaperTrade], equity: list[float]) -> PaperAccount:
    bare = PaperAccount.from_dict({**data, "trades": [], "equity_curve": []})
    return replace(bare, trades=History(trades), equity_curve=History(equity))


def read_book(state_path: Path) -> PaperBook | None:
    """The saved book (either version), read-only: for reports and tests."""
    store = BookStore(state_path)
    store._cut_journal = lambda _length: None  # type: ignore[method-assign]  # never touch a live journal
    return store.load()
