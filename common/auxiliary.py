"""The start of an auxiliary program (``config.AUXILIARY``: web, notifier), off the trading path: its files private
to this user, its configuration selected as every process selects it (``config.select``), its log set up."""

from __future__ import annotations

import argparse
import os
import sys

from common import config, logs, private


def start(name: str, args: argparse.Namespace) -> config.Config:
    """``args`` carries ``config``, ``overlay`` (``config.add_arguments``) and ``log_level``. An invalid configuration
    is one line on stderr naming it and exit 2 (supervisord's log keeps it; the program is not restarted)."""
    os.umask(private.PRIVATE_UMASK)
    try:
        cfg = config.load(args.config, args.overlay)
    except config.ConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.setup(name, args.log_level or cfg.logging.level, cfg.logging.format)
    return cfg
