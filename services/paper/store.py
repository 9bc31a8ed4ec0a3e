"""The paper book on disk: one append-only file of commits (`common/durable.AppendLog`), group commit.

A save appends ONE line, a commit: for each account that changed since the previous save, its state (balance,
position, last bar, last price) and the trades and equity points it gained, in one write and one fdatasync
however many signals the batch applied. The line is the commit point: a kill -9 (or a power cut) in the middle of
the write leaves a torn last line, cut off when the file is opened, and the book loaded is exactly the one of the
last whole commit. Nothing else is rewritten per save, so a save costs O(what changed), never O(history).

The file (`<state file without .json>.jsonl`, beside the state file of the formats before it):

- first line, `{"paper_book": 3}`: the format;
- then commits, `{"c": {SYM: {"balance", "position", "last_bar_time", "last_price", "trades": [new ones],
  "equity": [new points]}}}`, an account's first commit in the file also holding its `"costs"`.

Reading applies the commits in order, each account's history being the concatenation of its commits'. Reading
stops at the first line that is not JSON (after a power cut, what follows it cannot be trusted either) and cuts it
off with what follows: those commits are re-made from the signals since, which paper asks the preditor again. A
line that is JSON but not a commit is damage: refused with the file named, as an unreadable state file was.

Compaction: once what was appended since the file was last written whole exceeds both `COMPACT_MIN` and the size
of that whole write, the file is rewritten atomically (`durable.write_atomic`): the header and one commit of every
account with its whole history. The bytes written stay within twice the bytes appended, and a restart reads at
most about twice the book.

Upgrade: the formats before this one (version 1: the whole book in the state file; version 2: a small state file
replaced at each save plus a `<state>.journal.jsonl` of the history) are read when no log exists yet; the first
save writes the log whole, and the old files are removed once it exists.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from common import durable
from common.twin.position import CostModel, Position
from services.paper.account import History, PaperAccount, PaperBook, PaperTrade

LOG_VERSION = 3
HEADER = json.dumps({"paper_book": LOG_VERSION}, separators=(",", ":"))
COMPACT_MIN = 1 << 20  # bytes appended before a rewrite is considered (few rewrites of a small file)
LEGACY_VERSION = 1
JOURNAL_VERSION = 2

_TRADE_FIELDS = tuple(f.name for f in dataclasses.fields(PaperTrade))


class StateError(ValueError):
    """The saved book cannot be read; the message names the file."""


def log_path(state_path: Path) -> Path:
    """The commit log beside the configured state file (`paper-state.json` -> `paper-state.jsonl`)."""
    name = state_path.name[:-len(".json")] if state_path.name.endswith(".json") else state_path.name
    return state_path.with_name(name + ".jsonl")


def journal_path(state_path: Path) -> Path:
    """The history journal of the version 2 format (read to migrate it, then removed)."""
    name = state_path.name[:-len(".json")] if state_path.name.endswith(".json") else state_path.name
    return state_path.with_name(name + ".journal.jsonl")


# ---- the pure part: lines <-> accounts -------------------------------------------------------------------------

_ENCODER = json.JSONEncoder(separators=(",", ":"))  # one made once: json.dumps makes one per call with separators


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def _trade_dict(trade: PaperTrade) -> dict[str, Any]:
    # every field is a scalar: asdict()'s deep copy field by field is not needed
    return {name: getattr(trade, name) for name in _TRADE_FIELDS}


def _costs(costs: CostModel) -> dict[str, Any]:
    return {**asdict(costs), "lot_sizes": list(costs.lot_sizes)}


def account_entry(account: PaperAccount, n_trades: int, n_equity: int, with_costs: bool) -> dict[str, Any]:
    """An account's part of a commit: its state and its history from trade `n_trades` and equity point
    `n_equity` on (those before are in earlier commits)."""
    p = account.position
    entry: dict[str, Any] = {"balance": account.balance,
                             "position": {"direction": p.direction, "intensity": p.intensity,
                                          "entry_price": p.entry_price, "entry_time": p.entry_time,
                                          "floating_pnl": p.floating_pnl},
                             "last_bar_time": account.last_bar_time, "last_price": account.last_price,
                             "trades": [_trade_dict(t) for t in account.trades[n_trades:]],
                             "equity": list(account.equity_curve[n_equity:])}
    if with_costs:
        entry["costs"] = _costs(account.costs)
    return entry


def commit_line(entries: dict[str, dict[str, Any]]) -> str:
    return _ENCODER.encode({"c": entries})


def _num(x: Any) -> str:
    """A scalar as JSON, the text ``json`` makes of it (the repr of a finite float), without its encoder's
    walk: a commit holds some hundred of them."""
    kind = type(x)
    if kind is float and x - x == 0.0:  # finite
        return float.__repr__(x)
    if kind is int:
        return int.__repr__(x)
    if x is None:
        return "null"
    return _ENCODER.encode(x)  # anything else (NaN, a bool, ...) as json writes it


# an entry's state, its scalars by their repr: the JSON text when each is an int, a finite float or None (then
# "None", written "null" after), which the pattern checks (a bool, NaN, inf or another type: written by ``_num``)
_STATE = ('{"balance":%r,"position":{"direction":%r,"intensity":%r,"entry_price":%r,"entry_time":%r,'
          '"floating_pnl":%r},"last_bar_time":%r,"last_price":%r,"trades":[')
_SCALAR = r"(?:-?[0-9]+(?:\.[0-9]+)?(?:e[-+][0-9]+)?|None)"
_STATE_RE = re.compile(re.escape(_STATE).replace("%r", _SCALAR))
_BAR = _STATE + '],"equity":[%r]}'  # the entry of a bar that added one equity point and no trade: most of them
_BAR_RE = re.compile(re.escape(_BAR).replace("%r", _SCALAR))


def _tail(history: Any, n: int) -> Any:
    """The items of a history from the ``n``th on (none: no slice made)."""
    return () if n >= len(history) else history[n:]


def entry_text(account: PaperAccount, n_trades: int, n_equity: int, with_costs: bool) -> str:
    """``account_entry`` as JSON, the same text as ``_dumps(account_entry(...))`` (a test holds them equal), its
    scalars written directly: a commit has one per account, each bar."""
    p = account.position
    curve = account.equity_curve
    if not with_costs and n_trades >= len(account.trades) and n_equity == len(curve) - 1:
        text = _BAR % (account.balance, p.direction, p.intensity, p.entry_price, p.entry_time, p.floating_pnl,
                       account.last_bar_time, account.last_price, curve[n_equity])
        if _BAR_RE.fullmatch(text) is not None:
            return text.replace("None", "null") if "None" in text else text
    trades = ",".join([_ENCODER.encode(_trade_dict(t)) for t in _tail(account.trades, n_trades)])
    equity = ",".join(map(_num, _tail(curve, n_equity)))
    state = (account.balance, p.direction, p.intensity, p.entry_price, p.entry_time, p.floating_pnl,
             account.last_bar_time, account.last_price)
    text = _STATE % state
    if _STATE_RE.fullmatch(text) is None:
        text = _STATE.replace("%r", "%s") % tuple(map(_num, state))
    elif "None" in text:  # in no key
        text = text.replace("None", "null")
    text = f'{text}{trades}],"equity":[{equity}]'
    if with_costs:
        text += ',"costs":' + _ENCODER.encode(_costs(account.costs))
    return text + "}"


def commit_text(entries: dict[str, str]) -> str:
    """``commit_line`` of entries already written (``entry_text``)."""
    return '{"c":{' + ",".join(_ENCODER.encode(s) + ":" + e for s, e in entries.items()) + "}}"


@dataclasses.dataclass
class _Building:
    """An account as the commits read so far make it."""

    costs: CostModel
    state: dict[str, Any]
    trades: list[PaperTrade]
    equity: list[float]


def _fold(accounts: dict[str, _Building], commit: Any) -> None:
    """One commit onto the accounts read so far; raises (KeyError, TypeError, ValueError) on a malformed one."""
    changes = commit["c"]
    if not isinstance(changes, dict):
        raise TypeError("a commit is a map of accounts")
    for symbol, entry in changes.items():
        known = accounts.get(symbol)
        if "costs" in entry:
            raw = dict(entry["costs"])
            raw["lot_sizes"] = tuple(raw["lot_sizes"])
            costs = CostModel(**raw)
        elif known is not None:
            costs = known.costs
        else:
            raise KeyError(f"{symbol}: first commit without its costs")
        if known is None:
            known = accounts[symbol] = _Building(costs, {}, [], [])
        known.costs = costs
        known.state = {k: entry[k] for k in ("balance", "position", "last_bar_time", "last_price")}
        known.trades.extend(PaperTrade.from_dict(t) for t in entry["trades"])
        known.equity.extend(float(e) for e in entry["equity"])


def _account(symbol: str, b: _Building) -> PaperAccount:
    s = b.state
    return PaperAccount(symbol=symbol, costs=b.costs, balance=float(s["balance"]),
                        position=Position.from_dict(s["position"]), last_bar_time=s["last_bar_time"],
                        last_price=s["last_price"], trades=History(b.trades), equity_curve=History(b.equity))


def parse(lines: list[str], where: str) -> tuple[PaperBook | None, int]:
    """The book the lines of a log hold and how many lines were read (those after them are not JSON: a write
    a crash cut short). No line at all: None. StateError (naming `where`) on a line that is JSON but no commit."""
    if not lines:
        return None, 0
    try:
        header = json.loads(lines[0])
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("paper_book") != LOG_VERSION:
        raise StateError(f"paper book {where}: first line {lines[0][:80]!r} is not the header of version "
                         f"{LOG_VERSION}")
    accounts: dict[str, _Building] = {}
    read = 1
    for number, line in enumerate(lines[1:], start=2):
        try:
            commit = json.loads(line)
        except ValueError:
            break
        try:
            _fold(accounts, commit)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(f"paper book {where} line {number} unreadable: {exc!r}") from None
        read = number
    try:
        book = PaperBook({s: _account(s, b) for s, b in accounts.items()})
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"paper book {where} unreadable: {exc!r}") from None
    return book, read


# ---- the file ---------------------------------------------------------------------------------------------------

class BookStore:
    def __init__(self, state_path: Path, compact_min: int = COMPACT_MIN):
        self.state_path = state_path  # the configured name; the formats before this one lived in it
        self.path = log_path(state_path)
        self.saved: dict[str, tuple[int, int]] = {}  # symbol -> (trades, equity points) already in the file
        self.legacy = False  # the last load read a file of a format before this one: the next save writes it whole
        self.commits = 0  # appended commits, rewrites apart (for counters)
        self.rewrites = 0
        self.base = 0  # bytes of the file when it was last written whole (or read)
        self.appended = 0  # bytes appended since
        self._must_rewrite = True  # no file of this format yet, or a write failed: the next save writes it whole
        self.compact_min = compact_min
        self._log: durable.AppendLog | None = None

    # ---- load -------------------------------------------------------------------------------
    def load(self) -> PaperBook | None:
        """The book of the last whole commit (or of a file of an older format), None when there is none.
        StateError names the bad file."""
        self.close()
        self._log = None  # read again (a load in the same process: the lines were dropped after the first)
        log = self._file()
        book, read = parse(log.lines, str(self.path))
        if read < len(log.lines):  # a commit a crash cut short: what follows cannot be trusted
            log.cut(read)
        log.lines = []  # read: not kept
        if book is None:
            book = self._load_legacy()
            self.legacy = book is not None
            self.saved = {}
            self._must_rewrite = True
            return book
        self.legacy = False
        self.saved = {s: (len(a.trades), len(a.equity_curve)) for s, a in book.accounts.items()}
        self.base, self.appended = log.size, 0
        self._must_rewrite = False
        self._remove_legacy()  # migrated into this file (a kill after its first write left them)
        return book

    def _load_legacy(self) -> PaperBook | None:
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
                return PaperBook.from_dict(data)
            except (ValueError, KeyError, TypeError) as exc:
                raise StateError(f"paper state {self.state_path} (version 1) unreadable: {exc}") from None
        if version != JOURNAL_VERSION:
            raise StateError(f"paper state {self.state_path}: version {version!r}, expected {JOURNAL_VERSION} (or "
                             f"{LEGACY_VERSION})")
        try:
            length = int(data["journal_bytes"])
            accounts = data["accounts"]
            counts = {s: (int(a["trades"]), int(a["equity_points"])) for s, a in accounts.items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(f"paper state {self.state_path} unreadable: {exc}") from None
        history = _read_journal(journal_path(self.state_path), length, counts, self.state_path)
        try:
            return PaperBook({s: _legacy_account(a, *history[s]) for s, a in accounts.items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"paper state {self.state_path} unreadable: {exc}") from None

    def _remove_legacy(self) -> None:
        removed = False
        for old in (self.state_path, journal_path(self.state_path)):
            if old.exists():
                old.unlink()
                removed = True
        if removed:
            durable.fsync_dir(self.path.parent)

    # ---- save -------------------------------------------------------------------------------
    def save(self, book: PaperBook) -> int:
        """Commit what changed in the book since the last save: one line, one write, one fdatasync (or the whole
        file rewritten atomically: the first save, after a failed write, or a compaction). Returns the bytes
        written (0: nothing changed)."""
        entries: dict[str, str] = {}
        counts: dict[str, tuple[int, int]] = {}
        rewrite = self._must_rewrite or not set(self.saved) <= set(book.accounts)  # an account dropped
        for symbol, account in book.accounts.items():
            n = len(account.trades), len(account.equity_curve)
            was = self.saved.get(symbol)
            if rewrite or was != n:
                entries[symbol] = entry_text(account, *(was or (0, 0)), with_costs=was is None)
            counts[symbol] = n
        if not rewrite and not entries:
            return 0
        log = self._file()
        if not rewrite:
            line = commit_text(entries)
            if self.appended + len(line) + 1 <= max(self.compact_min, self.base):
                log.add(line)
                try:
                    written = log.commit()
                except BaseException:
                    log.drop_pending()  # the file as it was (the append cut off): written whole next time
                    self._must_rewrite = True
                    raise
                self.appended += written
                self.saved = counts
                self.commits += 1
                return written
        whole = commit_line({s: account_entry(a, 0, 0, with_costs=True) for s, a in book.accounts.items()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        log.rewrite([HEADER, whole])
        self.base, self.appended = log.size, 0
        self.saved = counts
        self._must_rewrite = self.legacy = False
        self.rewrites += 1
        self._remove_legacy()
        return log.size

    def close(self) -> None:
        if self._log is not None:
            self._log.close()

    def _file(self) -> durable.AppendLog:
        if self._log is None:
            self._log = durable.AppendLog(self.path)
        return self._log


def read_book(state_path: Path) -> PaperBook | None:
    """The saved book (any format), read-only (no torn tail cut, no file removed): for reports and tests."""
    path = log_path(state_path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    end = data.rfind(b"\n") + 1
    lines = data[:end - 1].decode("utf-8", "surrogateescape").split("\n") if end else []
    book, _read = parse(lines, str(path))
    return book if book is not None else BookStore(state_path)._load_legacy()


# ---- the version 2 format, read to migrate it -------------------------------------------------------------------

def _read_journal(journal: Path, length: int, counts: dict[str, tuple[int, int]], state_path: Path
                  ) -> dict[str, tuple[list[PaperTrade], list[float]]]:
    """The history a version 2 state file committed: the first `length` bytes of its journal."""
    try:
        with open(journal, "rb") as f:
            data = f.read(length)
    except FileNotFoundError:
        data = b""
    if len(data) < length:
        raise StateError(f"paper journal {journal} has {len(data)} bytes, the state file {state_path} "
                         f"committed {length}: the history is incomplete")
    history: dict[str, tuple[list[PaperTrade], list[float]]] = {s: ([], []) for s in counts}
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            entry = json.loads(line)
            trades, equity = history[entry["s"]]
            if "e" in entry:
                equity.append(float(entry["e"]))
            else:
                trades.append(PaperTrade.from_dict(entry["t"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"paper journal {journal} line {number} unreadable: {exc}") from None
    for symbol, (n_trades, n_equity) in counts.items():
        trades, equity = history[symbol]
        if (len(trades), len(equity)) != (n_trades, n_equity):
            raise StateError(f"paper journal {journal}: {symbol} has {len(trades)} trades and {len(equity)} "
                             f"equity points, the state file {state_path} committed {n_trades} and {n_equity}")
    return history


def _legacy_account(data: dict[str, Any], trades: list[PaperTrade], equity: list[float]) -> PaperAccount:
    bare = PaperAccount.from_dict({**data, "trades": [], "equity_curve": []})
    return replace(bare, trades=History(trades), equity_curve=History(equity))
