"""`python -m services.connector.sim` / `oracle sim-broker`: run the simulator until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from common import private
from services.connector.sim.server import SimConfig, SimServer

NOT_STARTED_EXIT_S = 3.0  # > deploy/supervisord.conf's startsecs of the sim-broker program


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sim-broker", description="Protocol-level cTrader Open API simulator")
    p.add_argument("--csv", required=True, help="bar CSV: time (bar open, Unix s UTC),open,high,low,close,volume")
    p.add_argument("--symbol", default="EURUSD", help="symbol the H1 CSV holds (one of the catalog's)")
    p.add_argument(
        "--timeframe", default="H1", help="the bars `advance bars` counts; a closed market takes one of them at most"
    )
    p.add_argument(
        "--speed",
        type=float,
        default=3600.0,
        help="simulated seconds per wall second (0 = manual: advance through the control port)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5035)
    p.add_argument("--tls", action="store_true", help="TLS with a self-signed certificate")
    p.add_argument("--cert", default=None, help="with --tls: keep the certificate in this file (made when missing; "
                   "its key beside it, .key): the file a client trusts")
    p.add_argument("--control-port", type=int, default=0, help="JSON control port on 127.0.0.1 (0 = any)")
    p.add_argument(
        "--spot-interval", type=int, default=60, help="one spot event per symbol per this many seconds of points"
    )
    p.add_argument("--start-bar", type=int, default=0, help="index of the first bar to replay")
    p.add_argument("--start-time", type=int, default=None, help="replay from the first bar at/after this Unix time")
    p.add_argument("--state", default=None, help="JSON file keeping positions, balance, deals and the cursor")
    p.add_argument(
        "--synthetic-symbols", type=int, default=0, help="also serve SYN01..SYNnn (EURUSD-like, the CSV shifted)"
    )
    p.add_argument(
        "--synthetic-offset-bars", type=int, default=24, help="SYNk replays the CSV k * this many bars ahead (0: same)"
    )
    p.add_argument("--client-id", default="sim-client")
    p.add_argument("--client-secret", default="sim-secret")
    p.add_argument("--access-token", default="sim-token")
    p.add_argument("--refresh-token", default="sim-refresh")
    p.add_argument("--token-lifetime", type=int, default=2_628_000, help="an access token's life, s of server time")
    p.add_argument("--account-id", type=int, default=1_000_001)
    p.add_argument("--balance", type=float, default=10_000.0)
    p.add_argument("--deposit-currency", default="USD", help="the account's currency (USD, EUR, ...)")
    p.add_argument("--heartbeat", type=float, default=10.0, help="server heartbeat interval, s")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--from-config", action="store_true", help="take every setting from the configuration's broker.sim")
    return p


def config_from_args(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        csv_path=args.csv,
        symbol=args.symbol,
        timeframe=args.timeframe,
        speed=args.speed,
        host=args.host,
        port=args.port,
        tls=args.tls,
        cert_path=args.cert,
        control_port=args.control_port,
        spot_interval_s=args.spot_interval,
        start_bar=args.start_bar,
        start_time=args.start_time,
        state_path=args.state,
        client_id=args.client_id,
        client_secret=args.client_secret,
        access_token=args.access_token,
        refresh_token=args.refresh_token,
        token_lifetime_s=args.token_lifetime,
        account_id=args.account_id,
        balance=args.balance,
        deposit_asset=args.deposit_currency,
        heartbeat_interval=args.heartbeat,
        synthetic_symbols=args.synthetic_symbols,
        synthetic_offset_bars=args.synthetic_offset_bars,
    )


async def _serve(config: SimConfig) -> None:
    server = SimServer(config)
    await server.start()
    # one machine-readable line so a parent process can find the ports
    print(f"SIM-BROKER READY port={server.port} control_port={server.control_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def config_from_settings(cfg: Any) -> SimConfig:
    """The simulator's settings from the system configuration (`broker.sim`, one place for both sides)."""
    from common import config as common_config

    sim = cfg.broker.sim
    csv = cfg.path(sim.csv)
    if not csv.exists() and not Path(sim.csv).is_absolute():
        csv = common_config.REPO_ROOT / sim.csv  # the bundled data file, when ORACLE_HOME has no copy
    data_dir = cfg.path(cfg.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    return SimConfig(
        csv_path=str(csv),
        symbol=sim.symbol,
        timeframe=sim.timeframe,
        speed=sim.speed,
        host=sim.host,
        port=sim.port,
        tls=sim.tls,
        cert_path=str(data_dir / sim.cert_file) if sim.tls else None,
        control_port=sim.control_port,
        start_bar=sim.start_bar,
        spot_interval_s=sim.spot_interval_s,
        state_path=str(data_dir / sim.state_file) if sim.state_file else None,
        client_id=sim.client_id,
        client_secret=sim.client_secret,
        access_token=sim.access_token,
        refresh_token=sim.refresh_token,
        token_lifetime_s=sim.token_lifetime_s,
        account_id=sim.account_id,
        balance=sim.balance,
        deposit_asset=sim.deposit_currency,
        synthetic_symbols=sim.synthetic_symbols,
        synthetic_offset_bars=sim.synthetic_offset_bars,
    )


def _from_config(argv: list[str]) -> tuple[SimConfig, str] | int:
    """The configured simulator; an exit code when there is none to run (a bad configuration: 2; broker.type is
    not sim: 0, the simulator is not started)."""
    from common import config as common_config

    p = argparse.ArgumentParser(prog="sim-broker --from-config", description="the simulator as configured")
    p.add_argument("--from-config", action="store_true", required=True)
    common_config.add_arguments(p)
    p.add_argument("--log-level", default=os.environ.get("ORACLE_LOG_LEVEL") or "INFO")
    args = p.parse_args(argv)
    try:
        cfg = common_config.load(args.config, args.overlay)
    except common_config.ConfigError as exc:
        print(f"sim-broker: {exc}", file=sys.stderr)
        return 2
    if cfg.broker.type != "sim":
        print(f"sim-broker: broker.type is {cfg.broker.type}: the simulator is not started", flush=True)
        # exit 0 after supervisord's startsecs: a start that ran its course, an expected exit, no restart
        time.sleep(NOT_STARTED_EXIT_S)
        return 0
    return config_from_settings(cfg), args.log_level


def main(argv: list[str] | None = None) -> int:
    os.umask(private.PRIVATE_UMASK)  # its state file (the account, deals) and its TLS key are its user's alone
    argv = sys.argv[1:] if argv is None else argv
    if "--from-config" in argv:
        got = _from_config(argv)
        if isinstance(got, int):
            return got
        sim_config, level = got
        logging.basicConfig(
            level=level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        try:
            asyncio.run(_serve(sim_config))
        except (OSError, ValueError) as exc:
            print(f"sim-broker: {exc}", file=sys.stderr)
            return 1
        return 0
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(_serve(config_from_args(args)))
    except (OSError, ValueError) as exc:
        print(f"sim-broker: {exc}", file=sys.stderr)
        return 1
    return 0
