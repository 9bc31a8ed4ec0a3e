"""`oracle broker-token`: hand a new broker token pair to the running system, without restarting anything.

    oracle broker-token                  # asks for the access and the refresh token (not echoed)
    printf '%s\\n%s\\n' "$ACCESS" "$REFRESH" | oracle broker-token   # or from standard input, one per line
    oracle broker-token --from-env       # CTRADER_ACCESS_TOKEN and CTRADER_REFRESH_TOKEN

The pair is written to the connector's token file (`<data_dir>/<broker.token_file>`, mode 0600), which the
connector looks at every few seconds: a session waiting for credentials connects with it at once, a working
session uses it at its next authorisation. The tokens never appear on a command line, in a log or on the wire.
Then it waits (`--wait`, default 30 s) until the connector says it is connected with this pair.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time

from common import bus, config, keys, messages, wire
from services.connector import factory
from services.connector.ctrader.tokens import StoredTokens, TokenPair, TokenStore, fingerprint


def _read_pair(from_env: bool) -> TokenPair:
    if from_env:
        access, refresh = os.environ.get("CTRADER_ACCESS_TOKEN", ""), os.environ.get("CTRADER_REFRESH_TOKEN", "")
        missing = [n for n, v in (("CTRADER_ACCESS_TOKEN", access), ("CTRADER_REFRESH_TOKEN", refresh)) if not v]
        if missing:
            raise ValueError(f"{' and '.join(missing)} not set in the environment")
    elif sys.stdin.isatty():
        access = getpass.getpass("access token: ").strip()
        refresh = getpass.getpass("refresh token: ").strip()
    else:
        lines = [ln.strip() for ln in sys.stdin.read().splitlines() if ln.strip()]
        if len(lines) != 2:
            raise ValueError(f"standard input must hold two lines (access token, refresh token), got {len(lines)}")
        access, refresh = lines
    if not access or not refresh:
        raise ValueError("both an access token and a refresh token are needed")
    return TokenPair(access, refresh)


def _connector_took(cfg: config.Config, token_fp: str, timeout_s: float) -> tuple[bool, str]:
    """Wait until the connector is connected with the pair whose fingerprint is `token_fp`."""
    import zmq

    ctx = zmq.Context.instance()
    deadline = time.monotonic() + timeout_s
    last = "the connector did not answer"
    while time.monotonic() < deadline:
        req = bus.Requester(ctx, cfg.endpoint("connector", "rep"), "broker-token", 1000)
        try:
            report: messages.ConnectorStatus = req.call(messages.OP_STATUS.name, messages.NoArgs())
            broker = report.broker
        except (bus.RequestTimeout, bus.RequestFailed, wire.WireError) as exc:
            last = f"the connector did not answer: {exc}"
        else:
            if broker.get("connected") and not broker.get("auth_problem") and broker.get("token") == token_fp:
                return True, "the connector is connected with the new token"
            last = broker.get("auth_problem") or broker.get("reason") or "not connected with the new token yet"
        finally:
            req.close()
        time.sleep(0.5)
    return False, last


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="oracle broker-token", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    config.add_arguments(p)
    p.add_argument("--from-env", action="store_true", help="take CTRADER_ACCESS_TOKEN and CTRADER_REFRESH_TOKEN")
    p.add_argument("--wait", type=float, default=30.0, metavar="S",
                   help="seconds to wait for the connector to connect with it (0: do not wait; default 30)")
    args = p.parse_args(argv)
    try:
        cfg = config.load(args.config, args.overlay)
        keys.secure_process(cfg, keys.OPERATOR)  # wire.curve: the request to the connector goes with the operator's key
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        pair = _read_pair(args.from_env)
    except (ValueError, EOFError, KeyboardInterrupt) as exc:
        print(f"oracle broker-token: {exc or 'cancelled'}", file=sys.stderr)
        return 2
    store = TokenStore(factory.token_path(cfg))
    try:
        old = store.load()
    except ValueError as exc:
        print(f"oracle broker-token: replacing it ({exc})", file=sys.stderr)
        old = None
    try:
        store.save(StoredTokens(pair, old.env_fingerprint if old else None, "operator"))
    except OSError as exc:
        print(f"oracle broker-token: cannot write {store.path}: {exc}", file=sys.stderr)
        return 1
    token_fp = fingerprint(pair.access_token)
    print(f"token {token_fp} written to {store.path}")
    if args.wait <= 0:
        return 0
    ok, why = _connector_took(cfg, token_fp, args.wait)
    print(why if ok else f"not taken within {args.wait:g} s: {why}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
