"""The simulator's state file: the clock, balance, open positions and tokens, rewritten at every bar of the
configured timeframe and at stop, with the deals and orders appended beside it (`<state>.history.jsonl`); where
the clock starts (the state file's cursor, else the configured start bar or time).

A mixin of SimServer (server.py): it uses the server's config, account, market cursor and tokens.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from common import durable
from services.connector.sim.replay import CsvBar

log = logging.getLogger(__name__)
STATE_VERSION = 3


class StateFile:
    def _load_state(self) -> dict[str, Any] | None:
        path = self.config.state_path
        if not path or not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    @property
    def history_path(self) -> str | None:
        """The deals and orders, appended (JSON lines) beside the state file."""
        return f"{self.config.state_path}.history.jsonl" if self.config.state_path else None

    def _load_history(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        """The history the state file accounts for (`history_lines`); lines appended by a save that a crash cut
        before its state was written are dropped (the file is cut back to match)."""
        path = self.history_path
        count = int(state.get("history_lines", 0))
        if path is None or not os.path.exists(path):
            if count:
                raise ValueError(f"state file {self.config.state_path} counts {count} history lines but {path} is "
                                 "missing")
            return []
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
        if len(lines) < count:
            raise ValueError(f"{path} has {len(lines)} lines; the state file counts {count}")
        if len(lines) > count:
            log.warning("%s: %d line(s) after the last state save dropped", path, len(lines) - count)
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(lines[:count])
        self._history_lines = count
        return [json.loads(line) for line in lines[:count]]

    def _start_time(self, bars: list[CsvBar], state: dict[str, Any] | None) -> tuple[int, bool]:
        """Where the clock starts, and whether exactly there (a state file's cursor); else the start bar's open,
        where its first instant is then processed."""
        cfg = self.config
        if state is not None:
            path = cfg.state_path
            if "cursor_time" in state:
                t = int(state["cursor_time"])
                if not bars[0].time <= t <= bars[-1].time + 3600:
                    raise ValueError(f"state file {path}: cursor_time {t} is outside the CSV's bars")
                return t, True
            if "bar_index" not in state:
                raise ValueError(f"state file {path} has no replay cursor (cursor_time or bar_index)")
            index = int(state["bar_index"])
            if not 0 <= index < len(bars):
                raise ValueError(f"state file {path}: bar_index {index} is outside the CSV's {len(bars)} bars")
            log.warning(
                "state file %s is from an older simulator (its cursor is a bar index): resuming at the first point "
                "of bar %d (time %d); it is rewritten in the current format", path, index, bars[index].time
            )
            return bars[index].time, False
        start = cfg.start_bar
        if cfg.start_time is not None:
            start = next((i for i, b in enumerate(bars) if b.time >= cfg.start_time), len(bars) - 1)
        if not 0 <= start < len(bars):
            raise ValueError(f"start bar {start} is outside the CSV's {len(bars)} bars")
        return bars[start].time, False

    def _save_state(self) -> None:
        """The deals and orders made since the last save are appended to the history file; the rest (small: the
        clock, balance, open positions, tokens) is rewritten. O(1) however long the account's history grows."""
        path = self.config.state_path
        if not path:
            self.account.take_history()
            return
        new = self.account.take_history()
        if new:
            with open(self.history_path, "a", encoding="utf-8") as f:
                f.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in new)
            self._history_lines += len(new)
        data = {
            "version": STATE_VERSION,
            "cursor_time": self.market.now,
            "bar_index": self.market.bar_index,
            "account": self.account.to_json(),
            "history_lines": self._history_lines,
            "tokens": self.tokens.to_json(),
        }
        durable.write_atomic(path, json.dumps(data), fsync=False)  # rewritten at the next save: no fsync, as ever
