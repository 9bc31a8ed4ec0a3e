"""``oracle``: the operator's command line (argparse; tables with rich).

    oracle tap [PREFIX ...] [--json]     every publisher's messages, one line each (Espresso)
    oracle ctl COMMAND [ARGS] [--json]   a command of common/commands.py (oracle ctl --help lists them)
    oracle top                           services, symbols, positions, PnL, alerts, live
    oracle check-config                  every error of the configuration and its environment at once, every port
    oracle wait [--timeout S]            until the system is RUNNING (0), or FAILED / HALTED / the timeout (1, why)
    oracle keys init | list              the CURVE keys of the wire (wire.curve)
    oracle broker-token                  hand a new broker token pair to the running connector
    oracle web                           the read-only dashboard in a browser (services/web/), in the foreground
    oracle train | backtest | sim-broker | report ...   (the tools of the other services)

Heavy tools are imported only when their command runs, so ``oracle tap`` stays small.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import zmq

from common import bus, commands, config, failure, keys, liveness, logs, messages, preflight, private, wire

# command -> "module:function" taking argv; imported lazily (torch etc. stay out of the CLI)
TOOLS = {
    "train": ("services.preditor.train:main", "train a model (HMM + PPO) from a bars CSV (default run: ~30 min)"),
    "backtest": ("services.preditor.backtest:main", "replay a model over a bars CSV: trades, metrics, equity PNG "
                 "(into ./backtest_out unless --out-dir)"),
    "sim-broker": ("services.connector.sim:main", "the cTrader Open API simulator"),
    "broker-token": ("services.connector.token_cli:main", "hand a new broker token pair to the running system"),
    "report": ("services.persistence.report:main", "sessions | trades | events from the local store"),
    "report drift": ("services.paper.report:main", "real vs paper trades per symbol (the store, or trade files), "
                     "equity curves PNG (var/reports/drift.png unless --png)"),
    "web": ("services.web.service:main", "the read-only dashboard in the foreground (prints its URL)"),
}


def _load_config(args: argparse.Namespace) -> config.Config:
    try:
        return config.load(args.config, args.overlay)
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None


def _wire_config(args: argparse.Namespace) -> config.Config:
    """The configuration, and with wire.curve on every bus socket of this process CURVE with the operator's key."""
    cfg = _load_config(args)
    try:
        keys.secure_process(cfg, keys.OPERATOR)
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    return cfg


# ---- keys -------------------------------------------------------------------------------------


def _keys_dir(args: argparse.Namespace) -> Path:
    return Path(args.dir).resolve() if args.dir else (cfg := _load_config(args)).path(cfg.wire.keys_dir)


def keys_init(args: argparse.Namespace) -> int:
    keys_dir = _keys_dir(args)
    try:
        wanted = [keys.check_name(n) for n in args.only] if args.only else keys.names(_load_config(args).programs())
        made = keys.init(keys_dir, wanted)
    except (config.ConfigError, OSError) as exc:
        print(f"oracle keys init: {exc}", file=sys.stderr)
        return 2
    for name in made:
        print(f"made {keys.secret_path(keys_dir, name)} (secret, 0600) and {keys.public_path(keys_dir, name).name}")
    kept = [n for n in wanted if n not in made]
    if kept:
        print(f"kept the existing keys of {', '.join(kept)}")
    print(f"keys directory: {keys_dir} (0700)")
    return 0


def keys_list(args: argparse.Namespace) -> int:
    keys_dir = _keys_dir(args)
    try:
        publics = keys.load_publics(keys_dir)
    except config.ConfigError as exc:
        print(f"oracle keys list: {exc}", file=sys.stderr)
        return 2
    for name, key in publics.items():
        secret = "secret here" if keys.secret_path(keys_dir, name).exists() else "public only"
        print(f"{name:<16} {key.decode()}  {secret}")
    missing = [n for n in keys.names(_load_config(args).programs()) if n not in publics]
    if missing:
        print(f"no key for: {', '.join(missing)}")
    return 0


# ---- tap --------------------------------------------------------------------------------------


def _fmt_body(body: Any) -> str:
    return json.dumps(logs.redact(messages.to_wire(body)), separators=(",", ":"), default=str, sort_keys=True)


def tap(args: argparse.Namespace) -> int:
    cfg = _wire_config(args)
    ctx = zmq.Context()
    errors = bus.WireErrors("tap")
    sub = bus.Subscriber(ctx, cfg.publishers().values(), args.prefixes or [""], errors)
    deadline = time.monotonic() + args.seconds if args.seconds else None
    printed = 0
    try:
        while deadline is None or time.monotonic() < deadline:
            if not sub.sock.poll(200):
                continue
            for r in sub.drain():
                env = r.envelope
                if args.json:
                    line = json.dumps(
                        {
                            "ts": env.ts,
                            "src": env.src,
                            "topic": env.topic,
                            "epoch": env.epoch,
                            "seq": env.seq,
                            "type": env.type,
                            "delivery": r.seen.delivery.value,
                            "missed": r.seen.missed,
                            "body": logs.redact(messages.to_wire(env.body)),
                        },
                        default=str,
                    )
                else:
                    clock = time.strftime("%H:%M:%S", time.localtime(env.ts / 1e9))
                    clock += f".{env.ts // 1_000_000 % 1000:03d}"
                    mark = {"new_epoch": " [restarted]", "gap": f" [gap: {r.seen.missed} lost]"}.get(
                        r.seen.delivery.value, ""
                    )
                    line = f"{clock} {env.src:<12} {env.topic:<22} seq={env.seq}{mark} {_fmt_body(env.body)}"
                print(line, flush=True)
                printed += 1
                if args.count and printed >= args.count:
                    return 0
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
        bus.release(ctx)
        ctx.term()
    return 0


# ---- ctl --------------------------------------------------------------------------------------


def _request(cfg: config.Config, service: str, op: str, args: Any, timeout_ms: int) -> Any:
    ctx = zmq.Context.instance()
    req = bus.Requester(ctx, cfg.endpoint(service, "rep"), "ctl", timeout_ms)
    try:
        return req.call(op, args)
    finally:
        req.close()


def _direct_status(cfg: config.Config, timeout_ms: int) -> dict[str, messages.ProcessStatus | str]:
    """The orchestrator is silent: ask every service itself, all at once (one timeout at most in all, not one per
    service): each one's report, or why it gave none."""
    ctx = zmq.Context.instance()
    asked = {s: bus.Requester(ctx, cfg.endpoint(s, "rep"), "ctl", timeout_ms) for s in cfg.workers()}
    out: dict[str, messages.ProcessStatus | str] = {}
    try:
        for req in asked.values():
            req.send("status", messages.NoArgs())
        while len(out) < len(asked):
            for s, req in asked.items():
                if s in out:
                    continue
                try:
                    reply = req.take_reply()
                except (bus.RequestTimeout, wire.WireError) as exc:
                    out[s] = str(exc)
                    continue
                if reply is not None:
                    out[s] = reply.result if reply.ok else f"{reply.error_code}: {reply.error_message}"
            time.sleep(0.01)
    finally:
        for req in asked.values():
            req.close()
    return {s: out[s] for s in asked}


def _age(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}s"


def _mb(rss: int | None) -> str:
    return "-" if rss is None else f"{rss / 2**20:.0f}"


def _row(name: str, s: messages.ServiceSummary) -> list[str]:
    """A service as the orchestrator sees it."""
    restarts = "-" if s.restarts is None else str(s.restarts)
    state = messages.FAILED if s.failure else s.state
    return [name, state, str(s.pid), str(s.epoch), _age(s.uptime_s), _age(s.hb_age_s), _mb(s.rss_bytes), restarts,
            s.supervisor_state or "-"]


def _direct_row(name: str, report: messages.ProcessStatus | str) -> list[str]:
    """A service as it answered itself (no heartbeat age, restarts or supervisord state: the orchestrator's)."""
    if isinstance(report, str):
        return [name, "NOT ANSWERING", "-", "-", "-", "-", "-", "-", "-"]
    return [name, report.state, str(report.pid), str(report.epoch), _age(report.uptime_s), "-", _mb(report.rss_bytes),
            "-", "-"]


def _print_status(system: str, rows: list[list[str]], halted: str = "", issues: tuple[str, ...] = (),
                  note: str = "", refused: tuple[str, ...] = (), alerts: tuple[str, ...] = ()) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 140))
    console.print(f"system [bold]{system}[/bold]" + (f"  halted: {halted}" if halted else ""))
    table = Table("service", "state", "pid", "epoch", "uptime", "hb age", "RSS MB", "restarts", "supervisord")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for issue in issues:
        console.print(f"issue: {issue}")
    for line in refused:
        console.print(f"model refused: {line}", markup=False)
    if note:
        console.print(note)
    if alerts:
        console.print("alerts (newest last):")
        for line in alerts:
            console.print(f"  {line}", markup=False)


def _executor_note(report: messages.OrchestratorStatus) -> str:
    executor = report.services.get("executor")
    if executor is not None and executor.info.get("halted") and report.system != "HALTED":  # the risk guard's own
        return "executor: openings halted (why: oracle ctl executor-status; lifted by oracle ctl reset-halt)"
    return ""


def _print_result(result: commands.CommandResult) -> None:
    head = f"{result.service} {result.command.replace('_', '-')}"
    if not result.ok:
        print(f"{head}: {result.error}", file=sys.stderr)
        return
    print(f"{head}: done")
    for key, value in result.reply.items():
        if key == "command" and value == result.command:
            continue  # the head names it
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        print(f"  {key}: {text}")


NOT_RUNNING = 3  # ctl status's exit code when the system is not running (LSB: "program is not running")


def _status(cfg: config.Config, args: argparse.Namespace) -> int:
    down = liveness.system_down(cfg)
    if down:  # said at once: no request is sent, so no timeout is waited
        if args.json:
            print(json.dumps({"system": "NOT RUNNING", "reason": down}))
        else:
            print(f"system not running: {down}")
        return NOT_RUNNING
    try:
        report: messages.OrchestratorStatus = _request(cfg, "orchestrator", "status", messages.NoArgs(),
                                                       args.timeout_ms)
    except bus.RequestTimeout:
        print("orchestrator not answering; asking each service directly", file=sys.stderr)
        _print_direct_status(_direct_status(cfg, args.timeout_ms), args.json)
        _print_failures({p: f.cause for p, f in recorded_failures(cfg).items()}, sys.stderr)
        return 1
    if args.json:
        print(json.dumps(messages.to_wire(report), default=str))
    else:
        _print_status(report.system, [_row(name, s) for name, s in report.services.items()], report.halted_reason,
                      tuple(report.issues), _executor_note(report), tuple(report.refused_models),
                      tuple(report.alerts))
        _print_failures({name: s.failure for name, s in report.services.items() if s.failure}, sys.stdout)
    return 0


def _print_failures(causes: dict[str, str], out: Any) -> None:
    """Each program that cannot start until a person acts, and why (common/failure.py)."""
    for program, cause in causes.items():
        print(f"FAILED: {program}: {cause}", file=out)


def recorded_failures(cfg: config.Config) -> dict[str, failure.Failure]:
    """The permanent failures this host's programs recorded since supervisord started (a record older than its
    socket is a past run's), read from the files: for when the orchestrator cannot say (it failed, or is down)."""
    try:
        since = cfg.path(cfg.orchestrator.supervisor_socket).stat().st_mtime
    except OSError:
        return {}  # supervisord is not running here: no record is of a current start
    folder = failure.directory(cfg)
    found = {p: failure.read(folder, p) for p in cfg.programs()}
    return {p: f for p, f in found.items() if f is not None and f.ts >= since}


def _print_direct_status(reports: dict[str, messages.ProcessStatus | str], as_json: bool) -> None:
    system = "UNKNOWN (orchestrator down)"
    if as_json:
        services = {s: {"state": "NOT ANSWERING", "error": r} if isinstance(r, str) else messages.to_wire(r)
                    for s, r in reports.items()}
        print(json.dumps({"system": system, "services": services}, default=str))
    else:
        _print_status(system, [_direct_row(name, r) for name, r in reports.items()])


def ctl(args: argparse.Namespace) -> int:
    """One command of the registry (common/commands.py): arguments validated, sent to its service, result printed."""
    command = commands.COMMANDS[args.ctl_command]
    try:
        op_args = command.from_cli(args)
    except commands.CommandError as exc:
        print(f"oracle ctl {command.cli_name}: {exc.message}", file=sys.stderr)
        return 2
    cfg = _wire_config(args)
    if command.name == "status":
        return _status(cfg, args)
    op, record = command.message(op_args)
    try:
        reply = _request(cfg, command.service, op, record, args.timeout_ms)
        result = commands.CommandResult.answered(command, reply)
    except bus.RequestFailed as exc:
        result = commands.CommandResult(command.name, command.service, False, error=f"{exc.code}: {exc.message}")
    except (bus.RequestTimeout, wire.WireError) as exc:
        result = commands.CommandResult(command.name, command.service, False, error=f"no answer: {exc}")
    if args.json:
        print(json.dumps(result.to_dict(), default=str))
    else:
        _print_result(result)
    return 0 if result.ok else 1


TOP_PREFIXES = ["bar.", "bars.", "signal.", "signals.", "ack.", "fill.", "closed.", "account", "conn.", "alert.",
                "paper.metrics."]


TOP_REFRESH_S = 1.0  # the orchestrator's status, the connector's book and the session's row, this often
TOP_REQUEST_MS = 800  # each of those requests at most this long (a view, not a trading path)


def _top_refresh(cfg: config.Config, view: Any, requesters: dict[str, bus.Requester], first: bool) -> None:
    """One look at the system: whether it is up (no request when it is not), the orchestrator's status, the
    connector's book (real positions, equity, balance), the running session's row and, the first time, the stored
    alerts and halts (a view started late shows them)."""
    down = liveness.system_down(cfg)
    view.set_down(down)
    if down:
        return

    def ask(service: str, op: str, args: Any) -> Any:
        try:
            return requesters[service].call(op, args)
        except (bus.RequestTimeout, bus.RequestFailed, wire.WireError):
            return None

    report = ask("orchestrator", "status", messages.NoArgs())
    view.set_status(report, "" if report is not None else "orchestrator not answering")
    book = ask("connector", "positions", messages.NoArgs())
    if book is not None:
        view.set_book(book)
    sessions = ask("persistence", "query", messages.QueryArgs("sessions", {}, 1))
    if sessions is not None:
        view.set_session(sessions.records[0] if sessions.records else None)
    if first:
        events = ask("persistence", "query", messages.QueryArgs("events", {}, 200))
        if events is not None:
            view.set_history(events.records)
        for program in cfg.of_kind("preditor"):  # every symbol's last signal: the rows before the next bar closes
            last = ask(program, "last_signals", messages.NoArgs())
            for signal in sorted(last.signals.values(), key=lambda s: s.bar_time) if last is not None else ():
                view.apply(signal, 0)


def top(args: argparse.Namespace) -> int:
    """Live view: the published streams folded into tables; the orchestrator's status, the connector's book and the
    session every second. ``--once``: one look, printed as plain text (exit 3 when the system is not running)."""
    from rich.console import Console
    from rich.live import Live

    from common.top import TopView

    cfg = _wire_config(args)
    ctx = zmq.Context()
    requesters = {s: bus.Requester(ctx, cfg.endpoint(s, "rep"), "top", TOP_REQUEST_MS)
                  for s in ("orchestrator", "connector", "persistence", *cfg.of_kind("preditor"))}
    view = TopView()
    sub = None
    try:
        if args.once:
            _top_refresh(cfg, view, requesters, first=True)
            Console(width=max(Console().width, 160), no_color=True).print(view.render())
            return NOT_RUNNING if view.down else 0
        sub = bus.Subscriber(ctx, cfg.publishers().values(), TOP_PREFIXES, bus.WireErrors("top"))
        deadline = time.monotonic() + args.seconds if args.seconds else None
        next_refresh, first = 0.0, True
        with Live(view.render(), console=Console(), refresh_per_second=4, transient=False) as live:
            while deadline is None or time.monotonic() < deadline:
                now = time.monotonic()
                if now >= next_refresh:
                    _top_refresh(cfg, view, requesters, first)
                    next_refresh, first = time.monotonic() + TOP_REFRESH_S, first and bool(view.down)
                if sub.sock.poll(100):
                    for r in sub.drain():
                        view.apply(r.envelope.body, r.envelope.ts)
                live.update(view.render())
    except KeyboardInterrupt:
        pass
    finally:
        if sub is not None:
            sub.close()
        for req in requesters.values():
            req.close()
        bus.release(ctx)
        ctx.term()
    return 0


def _key_problems(cfg: config.Config) -> tuple[list[str], str]:
    """wire.curve: what is wrong with the keys directory or missing from it (the errors), and a line of what is
    there."""
    if not cfg.wire.curve:
        return [], "plain (wire.curve false)"
    keys_dir = cfg.path(cfg.wire.keys_dir)
    try:
        publics = keys.load_publics(keys_dir)
    except config.ConfigError as exc:
        return [f"wire.curve: {exc}"], "CURVE"
    missing = [n for n in keys.names(cfg.programs()) if n not in publics]
    here = [n for n in publics if keys.secret_path(keys_dir, n).exists()]
    errors = [f"wire.curve: no public key for {', '.join(missing)} in {keys_dir} (oracle keys init, or copy it from "
              "its host)"] if missing else []
    return errors, f"CURVE, keys in {keys_dir}: {len(publics)} public, secrets here for {', '.join(here) or 'none'}"


def _broker_lines(cfg: config.Config) -> list[str]:
    b, sim = cfg.broker, cfg.broker.sim
    if b.type == "ctrader":
        lines = [f"broker        ctrader {b.environment}: {b.hosts.get(b.environment, '?')}:{b.port} (TLS verified)",
                 "simulator     not started (broker.type ctrader: the sim-broker program exits at once)"]
    else:
        lines = [f"broker        sim: {sim.host}:{sim.port} ({'TLS' if sim.tls else 'plain TCP'})"]
        control = "none" if sim.control_port < 0 else f"127.0.0.1:{sim.control_port}"
        lines.append(f"simulator     {sim.host}:{sim.port}, control {control}, replaying {sim.csv}")
    for host, remote in cfg.orchestrator.remote_hosts.items():
        lines.append(f"host {host:<8} agent {remote.agent} ({', '.join(remote.programs)})")
    return lines


def check_config(args: argparse.Namespace) -> int:
    """Every error at once under one header (the files, then what the chosen broker and sinks need from the
    environment: common/preflight.py, the checks each process runs at its start), then every port."""
    base, overlay = config.select(args.config, args.overlay)
    src = f"{base}" + (f" + {overlay}" if overlay else "")
    try:
        cfg = config.load(args.config, args.overlay)
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    errors = [str(p) for p in preflight.problems(cfg, os.environ)]
    key_errors, wire_line = _key_problems(cfg)
    errors += key_errors
    if errors:
        print(f"invalid configuration ({src}):", file=sys.stderr)
        for line in errors:
            print(f"  {line}", file=sys.stderr)
    else:
        print(f"configuration OK ({src}; home {cfg.home})")
    print("endpoints:")
    for s in cfg.programs():
        print(f"  {s:<13} pub {cfg.endpoint(s, 'pub')}  rep {cfg.endpoint(s, 'rep')}")
    for line in _broker_lines(cfg):
        print(f"  {line}")
    print(f"  wire: {wire_line}")
    return 2 if errors else 0


def wait(args: argparse.Namespace) -> int:
    """Until the system is RUNNING (0), or FAILED, HALTED or the timeout (1), printing why: what ./scripts/run.sh
    waits with. Reads this host's programs' failure records (at once, even before the orchestrator is up or when it
    failed itself), and the orchestrator's status (every host's)."""
    cfg = _wire_config(args)
    deadline = time.monotonic() + args.timeout
    last = "no answer yet"
    while True:
        recorded = recorded_failures(cfg)  # this host's programs say it at once, before the orchestrator looks
        if recorded:
            causes = "; ".join(f"{p}: {f.cause}" for p, f in recorded.items())
            print(f"system FAILED: {causes}", file=sys.stderr)
            return 1
        try:
            report: messages.OrchestratorStatus = _request(cfg, "orchestrator", "status", messages.NoArgs(), 1000)
        except (bus.RequestTimeout, bus.RequestFailed, wire.WireError) as exc:
            report, last = None, f"orchestrator: {exc}"
        if report is not None:
            last = report.system
            if report.system == messages.RUNNING:
                print("system RUNNING")
                return 0
            if report.system == messages.FAILED:
                print(f"system FAILED: {report.failed_reason}", file=sys.stderr)
                return 1
            if report.system == messages.HALTED:
                print(f"system HALTED: {report.halted_reason}", file=sys.stderr)
                return 1
        if time.monotonic() >= deadline:
            print(f"system not RUNNING after {args.timeout:g} s (last: {last})", file=sys.stderr)
            return 1
        time.sleep(0.25)


# ---- entry point -------------------------------------------------------------------------------


def _config_options(default: Any) -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    config.add_arguments(options, default)  # one way to select the configuration (common/config.py select)
    return options


def _parser() -> argparse.ArgumentParser:
    common = _config_options(None)

    p = argparse.ArgumentParser(prog="oracle", description="Oracle Trader operator tools")
    sub = p.add_subparsers(dest="tool", required=True)

    t = sub.add_parser("tap", parents=[common], help="print every published message, live")
    t.add_argument("prefixes", nargs="*", help="topic prefixes (hb. sys. signal.EURUSD ...); default all")
    t.add_argument("--json", action="store_true", help="one JSON document per line")
    t.add_argument("--count", type=int, default=0, help="stop after N messages")
    t.add_argument("--seconds", type=float, default=0, help="stop after S seconds")
    t.set_defaults(func=tap)

    c = sub.add_parser("ctl", parents=[common], help="talk to the running system (commands: oracle ctl --help)",
                       description="Commands of the running system, each sent to the service that runs it.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ctl_options = _config_options(argparse.SUPPRESS)  # after the command too, not undoing one given before it
    ctl_options.add_argument("--json", action="store_true", help="the result as one JSON document")
    ctl_options.add_argument("--timeout-ms", type=int, default=3000, help="how long to wait for the answer")
    commands_of = c.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands.COMMANDS.values():
        cp = commands_of.add_parser(command.cli_name, parents=[ctl_options], description=command.help,
                                    help=f"{command.service}: {command.summary}",
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        command.add_arguments(cp)
        cp.set_defaults(func=ctl, ctl_command=command.name)

    o = sub.add_parser("top", parents=[common], help="live view: services, symbols, positions, PnL, alerts")
    o.add_argument("--seconds", type=float, default=0, help="stop after S seconds")
    o.add_argument("--once", action="store_true", help="one look, printed as plain text, then exit (3: system down)")
    o.set_defaults(func=top)

    k = sub.add_parser("check-config", parents=[common], help="validate the configuration and what it needs from "
                       "the environment (every error at once); show every endpoint and port")
    k.set_defaults(func=check_config)

    w = sub.add_parser("wait", parents=[common], help="wait until the system is RUNNING (exit 0), or say why not: "
                       "FAILED, HALTED, the timeout (exit 1)")
    w.add_argument("--timeout", type=float, default=60.0, metavar="S", help="give up after S seconds (default 60)")
    w.set_defaults(func=wait)

    ks = sub.add_parser("keys", help="the CURVE keys of the wire: init | list")
    keys_of = ks.add_subparsers(dest="keys_command", required=True)
    ki = keys_of.add_parser("init", parents=[common], help="make the missing keypairs (never overwrites one)")
    ki.add_argument("--dir", help="the keys directory (default: wire.keys_dir of the configuration)")
    ki.add_argument("--only", nargs="+", metavar="NAME",
                    help="only these names (a host's own programs on a two-host install); default every service "
                         "and operator")
    ki.set_defaults(func=keys_init)
    kl = keys_of.add_parser("list", parents=[common], help="names and public keys")
    kl.add_argument("--dir", help="the keys directory (default: wire.keys_dir of the configuration)")
    kl.set_defaults(func=keys_list)

    for name, (_target, help_text) in TOOLS.items():
        if " " not in name:
            sub.add_parser(name, help=help_text + (" | drift" if name == "report" else ""), add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    os.umask(private.PRIVATE_UMASK)  # what the CLI writes (configs, tokens, reports, a store it opens) is private
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["report", "drift"]:
        argv = ["report drift", *argv[2:]]
    if argv and argv[0] in TOOLS:
        target = TOOLS[argv[0]][0]
        module, func = target.split(":")
        try:
            tool = getattr(importlib.import_module(module), func)
        except (ImportError, AttributeError) as exc:
            print(f"oracle {argv[0]}: not available in this build ({exc})", file=sys.stderr)
            return 2
        return int(tool(argv[1:]) or 0)
    args = _parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
