"""The seed's health checks, as a pure function of the heartbeats.

- the broker accepts our credentials (else: what a person must do), and the connector is connected;
- every symbol's last bar is fresh while its market is open: a timeout derived from its timeframe (factor x
  timeframe + grace), instead of the seed's fixed 300 s that was shorter than one M15 bar plus delays; whether a
  market is open is the connector's word (`market_open` in its heartbeat), which also holds for the services that
  cannot tell (the preditor), so gold's daily break or a holiday is no alarm for any of them;
- RSS of every process against a limit;
- the persistence backlog against a limit;
- every service has a live heartbeat;
- supervisord runs the preditor programs of the configuration (its shards: `numprocs`).
"""

from __future__ import annotations

from collections.abc import Iterable

from common.config import TIMEFRAMES, Health
from services.orchestrator.registry import ServiceView

MB = 1024 * 1024


def issues(views: Iterable[ServiceView], now: float, cfg: Health, hb_timeout_s: float) -> list[str]:
    views = list(views)
    closed, opened = closed_markets(views), open_for(views)
    found: list[str] = []
    for v in views:
        if v.failure and not v.alive(now, hb_timeout_s):
            continue  # it failed permanently: its cause is said (the system's FAILED), not a missing heartbeat
        if not v.alive(now, hb_timeout_s):
            age = v.hb_age(now)
            found.append(f"{v.name}: no heartbeat" + (f" for {age:.1f} s" if age is not None else " yet"))
            continue
        hb = v.hb
        assert hb is not None
        if hb.rss_bytes > cfg.memory_limit_mb * MB:
            found.append(f"{v.name}: RSS {hb.rss_bytes / MB:.0f} MB over the {cfg.memory_limit_mb:g} MB limit")
        info = hb.info
        if info.get("broker_auth"):
            found.append(f"{v.name}: {info['broker_auth']}")
        elif info.get("connected") is False:
            found.append(f"{v.name}: broker not connected")
        backlog = info.get("backlog")
        if isinstance(backlog, int) and backlog > cfg.max_backlog:
            found.append(f"{v.name}: backlog of {backlog} writes over {cfg.max_backlog}")
        for key, facts in sorted((info.get("symbols") or {}).items()):
            stale = _stale_bar(key, facts, cfg, closed, opened)
            if stale:
                found.append(f"{v.name}: {stale}")
    return found


def bar_timeout_s(timeframe: str, cfg: Health) -> float:
    return TIMEFRAMES[timeframe] * cfg.bar_timeout_factor + cfg.bar_grace_s


def closed_markets(views: Iterable[ServiceView]) -> set[str]:
    """The symbols some service (the connector) reports closed: `market_open` false in its heartbeat."""
    return {key.split(" ")[0] for v in views if v.hb is not None
            for key, facts in (v.hb.info.get("symbols") or {}).items() if facts.get("market_open") is False}


def open_for(views: Iterable[ServiceView]) -> dict[str, float]:
    """How long each symbol's market has been open again after a closure (`open_for_s`, the connector's word)."""
    return {key.split(" ")[0]: facts["open_for_s"] for v in views if v.hb is not None
            for key, facts in (v.hb.info.get("symbols") or {}).items()
            if isinstance(facts.get("open_for_s"), int | float)}


def _stale_bar(key: str, facts: dict, cfg: Health, closed: set[str] = frozenset(),
               opened: dict[str, float] | None = None) -> str:
    """`key` names the bar stream ("EURUSD H1"); a closed market (weekend, break, holiday) makes no bar, and after it
    reopens the first bar is due a period later: the age counts from the open."""
    tf = facts.get("timeframe")
    age = facts.get("last_bar_age_s")
    if tf not in TIMEFRAMES or not isinstance(age, int | float) or facts.get("market_open") is False:
        return ""
    symbol = key.split(" ")[0]
    if symbol in closed:
        return ""
    since_open = (opened or {}).get(symbol)
    if since_open is not None:
        age = min(age, since_open)
    limit = bar_timeout_s(tf, cfg)
    name = key if key.endswith(f" {tf}") else f"{key} {tf}"
    return f"{name}: no bar for {age:.0f} s (limit {limit:.0f} s)" if age > limit else ""


def programs_problem(kind: str, wanted: Iterable[str], procs: dict[str, dict]) -> str:
    """What is wrong when supervisord (`procs`: getAllProcessInfo by name) runs other programs of `kind` than the
    configuration's `wanted` (the preditor's shards: deploy/supervisord.conf's numprocs); "" when nothing is, or
    when supervisord runs none of that kind (a layout of its own: no word on it)."""
    wanted = sorted(wanted)
    running = sorted(n for n, info in procs.items() if info.get("group") == kind or n == kind)
    if not running or running == wanted:
        return ""
    how = f"numprocs={len(wanted)}" + (", process_name and log as its comment says" if len(wanted) > 1 else "")
    return (f"supervisord runs the {kind} programs {', '.join(running)}, the configuration has {', '.join(wanted)} "
            f"(deploy/supervisord.conf [program:{kind}]: {how})")
