"""Configuration: ``config/default.yaml`` + an optional overlay, ``${VAR}`` expansion, validation.

- ``${VAR}`` takes the environment variable and is an error when it is unset (never the literal
  text); ``${VAR:default}`` falls back to ``default`` (which may be empty).
- The overlay is deep-merged over the base file (maps merge, everything else replaces); a key written with a
  ``!`` suffix in the overlay (``symbols!: {XAUUSD: M15}``) REPLACES the base's map instead of merging into it.
- One way to choose the files, for every process and every ``oracle`` command (``select``): ``--config PATH``, else
  ``$ORACLE_CONFIG``, else ``config/default.yaml``; ``--overlay PATH``, else ``$ORACLE_OVERLAY``, else
  ``config/local.yaml`` when it exists.
- Validation is a pydantic schema with unknown keys forbidden; every error names the key.
- Relative paths resolve against ORACLE_HOME (env), default the repository root, so every
  process and CLI sees the same files whatever its working directory.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common import programs, timeframes

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("orchestrator", "persistence", "preditor", "executor", "paper", "connector")
WORKERS = SERVICES[1:]
# supervisord programs off the trading path: never booted, never watched, read-only
AUXILIARY = ("web", "notifier")
TIMEFRAMES = timeframes.TRADED  # name -> bar seconds (common/timeframes.py)
_IPC_PATH_MAX = 107  # sun_path limit on Linux, minus the NUL


class ConfigError(ValueError):
    pass


def home(env: dict | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("ORACLE_HOME") or REPO_ROOT).resolve()


# ---- schema ----------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PosFloat = Annotated[float, Field(gt=0)]
PosInt = Annotated[int, Field(gt=0)]


class Endpoints(_Section):
    pub: str | None = None
    rep: str | None = None


class ServiceRuntime(_Section):
    heartbeat_interval_s: PosFloat = 1.0
    hello_interval_s: PosFloat = 0.25
    request_timeout_ms: PosInt = 2000
    stop_timeout_s: PosFloat = 5.0
    # CPU priority (Unix nice, 0..19: higher yields more) of the services off the bar -> order path, so that on a
    # small machine the bookkeeping of a bar runs after its orders went out rather than beside them
    nice: dict[Literal[SERVICES], Annotated[int, Field(ge=0, le=19)]] = {  # type: ignore[valid-type]
        "paper": 10, "persistence": 10}


class RemoteHost(_Section):
    """Another host's supervisord, reached through its host agent (services/orchestrator/agent.py) over the wire."""

    agent: str  # the agent's REP endpoint (tcp:// on that host's address)
    programs: list[Literal[WORKERS]]  # type: ignore[valid-type]  # the services that host's supervisord runs


class Orchestrator(_Section):
    heartbeat_timeout_s: PosFloat = 5.0
    stall_timeout_s: PosFloat = 15.0
    restart_limit: PosInt = 3  # R: more than R restarts ...
    restart_window_s: PosFloat = 60.0  # ... in T seconds escalates to HALTED
    step_timeout_s: PosFloat = 120.0
    supervisor_socket: str = "var/supervisor.sock"
    status_interval_s: PosFloat = 1.0
    # services run by another host's supervisord (deploy/two-host/): host name -> its agent and programs; every
    # other service is this host's (supervisor_socket)
    remote_hosts: dict[str, RemoteHost] = {}

    @model_validator(mode="after")
    def _one_host_per_program(self) -> Orchestrator:
        seen: dict[str, str] = {}
        for host, remote in self.remote_hosts.items():
            for program in remote.programs:
                if program in seen:
                    raise ValueError(f"remote_hosts: {program} is on both {seen[program]} and {host}")
                seen[program] = host
        return self


class Health(_Section):
    memory_limit_mb: PosFloat = 1000.0
    max_backlog: PosInt = 100
    bar_timeout_factor: PosFloat = 2.0  # a symbol is stale after factor x its timeframe ...
    bar_grace_s: float = Field(default=120.0, ge=0)  # ... plus this grace


class SimBroker(_Section):
    """The bundled cTrader simulator (``oracle sim-broker --from-config``) and how the connector reaches it."""

    csv: str = "data/EURUSD_H1_2017.csv"  # relative: ORACLE_HOME, else the repository's bundled data/
    symbol: str = "EURUSD"
    timeframe: Literal[tuple(TIMEFRAMES)] = "H1"  # type: ignore[valid-type]
    speed: float = Field(default=2400.0, ge=0)  # simulated seconds per wall second (0 = manual)
    start_bar: int = Field(default=1100, ge=0)  # first replayed bar; the bars before it are history
    # one spot event per symbol per this many seconds of points (60: every point; the bars use every point)
    spot_interval_s: int = Field(default=60, ge=1)
    host: str = "127.0.0.1"
    port: int = Field(default=5035, ge=0, le=65535)
    control_port: int = Field(default=5045, ge=-1, le=65535)  # JSON control port on 127.0.0.1; -1 = none
    # TLS like the real server: a self-signed certificate the simulator keeps in data_dir/cert_file (its key beside
    # it, mode 0600), which the connector trusts and verifies (false: plain TCP)
    tls: bool = True
    cert_file: str = "sim-broker-cert.pem"
    state_file: str = "sim-broker.json"  # under data_dir: positions, balance, deals, replay cursor across restarts
    client_id: str = "sim-client"  # the simulator's own credentials: not secrets
    client_secret: str = "sim-secret"
    access_token: str = "sim-token"
    refresh_token: str = "sim-refresh"
    token_lifetime_s: PosInt = 2_628_000  # an access token's life on the simulator's (replay) clock: 30.4 days
    account_id: int = 1_000_001
    balance: PosFloat = 10_000.0
    deposit_currency: str = "USD"  # the account's currency (an asset of the simulator's symbols: USD, EUR, ...)
    # benchmarks: SYN01..SYNnn, EURUSD-like symbols replaying the CSV, SYNk shifted k * offset bars (0 = aligned)
    synthetic_symbols: int = Field(default=0, ge=0, le=999)
    synthetic_offset_bars: int = Field(default=24, ge=0)


class Broker(_Section):
    type: Literal["sim", "ctrader"] = "sim"
    environment: Literal["demo", "live"] = "demo"
    # real cTrader: Protobuf on 5035 on both hosts, TLS verified; credentials from CTRADER_* env variables only
    hosts: dict[Literal["demo", "live"], str] = {"demo": "demo.ctraderapi.com", "live": "live.ctraderapi.com"}
    port: int = Field(default=5035, gt=0, le=65535)
    ca_file: str | None = None  # extra CA bundle for the TLS verification (None: the system's)
    connect_attempts: int = Field(default=3, ge=0)  # at connector.connect (0 = forever); later: forever
    request_timeout_s: PosFloat = 10.0
    order_timeout_s: PosFloat = 10.0
    heartbeat_interval_s: PosFloat = 10.0
    # the access/refresh token pair in use, kept under data_dir (mode 0600) and preferred to the environment at
    # the next start (unless the environment holds a pair the file has not seen); refreshed this long before expiry
    token_file: str = "broker-tokens.json"
    token_refresh_margin_s: PosFloat = 172_800.0
    sim: SimBroker = SimBroker()


Timeframe = Literal[tuple(TIMEFRAMES)]  # type: ignore[valid-type]


class ConnectorSettings(_Section):
    # symbol -> timeframe(s) published on bar.<SYM>.<TF> from connector.connect on (the subscribe op adds more)
    symbols: dict[str, Timeframe | list[Timeframe]] = {"EURUSD": "H1"}  # type: ignore[valid-type]
    state_file: str = "connector-state.json"  # under data_dir: last published bar per symbol, subscriptions
    journal_file: str = "connector-orders.jsonl"  # under data_dir: client_order_id -> result, append-only
    account_interval_s: PosFloat = 5.0  # an AccountUpdate on `account` this often (and after fills/closes)
    op_timeout_s: PosFloat = 30.0  # the longest a REP op waits for the broker before answering an error
    history_timeout_s: PosFloat = 120.0
    # broker events wait this long after the process starts, so subscribers reconnect to the new PUB socket
    # (the slow joiner) before the bars and closes missed while the connector was down go out
    publish_grace_s: float = Field(default=1.0, ge=0)
    # closed bars of one stream already waiting together (a history catch-up, a burst) go out as one `bars.<SYM>.<TF>`
    # run message (at most messages.MAX_RUN bars); false: every bar on its own `bar.<SYM>.<TF>` as before
    bar_runs: bool = True


class Preditor(_Section):
    models_dir: str = "models"
    warmup_bars: PosInt = 1000
    trusted_models: list[str] = []
    snapshot_dir: str = "preditor"  # under data_dir: twins.jsonl, every model's snapshot, appended after each bar time
    fsync_snapshots: bool = True  # fdatasync each bar time's append (survives a power loss too)
    history_timeout_s: PosFloat = 60.0  # one history/subscribe request to the connector at warmup
    gap_fill_timeout_s: PosFloat = 10.0  # one history request to fill a gap (the live loop waits for it)
    gap_retry_s: PosFloat = 2.0  # a bar whose gap could not be filled waits and is retried this often
    warmup_retry_s: PosFloat = 30.0  # a model whose warmup failed is retried this often
    # the models split over this many processes (common/programs.py): 1 = the program `preditor`; N > 1 = the
    # programs preditor-0..N-1 (deploy/supervisord.conf's numprocs), each with its symbols' models
    shards: PosInt = 1
    # shard name -> its symbols (every configured symbol in exactly one); None: round robin in connector.symbols'
    # order
    assignment: dict[str, list[str]] | None = None


class Executor(_Section):
    config_file: str = "config/executor_symbols.json"
    dry_run: bool = False
    enter_on_first_signal: bool = False
    state_file: str = "executor-state.json"  # under data_dir: pause, halt and risk state across restarts
    order_timeout_s: PosFloat = 90.0  # one order request to the connector (it may reconcile and retry inside)


class Paper(_Section):
    enabled: bool = True
    initial_balance: PosFloat = 10000.0
    state_file: str = "paper-state.json"  # names the paper book, kept in <name>.jsonl (one commit per batch)


class SupabaseSinkSettings(_Section):
    """SUPABASE_URL and SUPABASE_KEY come from the environment only."""

    enabled: bool = False
    timeout_s: PosFloat = 10.0


class PostgresSinkSettings(_Section):
    enabled: bool = False
    dsn: str = ""  # e.g. "${ORACLE_PG_DSN:}": from the environment, never a password in the file
    connect_timeout_s: PosFloat = 5.0


class PersistenceSinks(_Section):
    """Remote copies of the local store (the shape services/persistence/sinks/factory.py validates)."""

    supabase: SupabaseSinkSettings = SupabaseSinkSettings()
    postgres: PostgresSinkSettings = PostgresSinkSettings()


class Persistence(_Section):
    sqlite_path: str = "var/data/oracle.db"
    heartbeat_interval_s: PosFloat = 60.0  # a session heartbeat record this often (the last one dates a crash)
    busy_timeout_ms: PosInt = 500  # a write waiting for a lock longer than this is answered store_busy
    max_db_mb: PosFloat | None = None  # a size quota on the store (None: the disk is the limit)
    sinks: PersistenceSinks = PersistenceSinks()


class Wire(_Section):
    """CURVE on every socket (common/keys.py, common/bus.py): required for a tcp:// endpoint off loopback."""

    curve: bool = False
    keys_dir: str = "var/keys"  # <name>.key (public) per program and operator; <name>.key_secret for this host's


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
EnvName = Annotated[str, Field(pattern=f"^{_ENV_NAME.pattern}$")]


class NotifierSettings(_Section):
    """The notifier (services/notifier): alerts, halts, external closes and session summaries to a webhook or a
    Telegram bot. Secrets (the webhook's URL, the bot's token) come from the environment variables named here."""

    sink: Literal["none", "webhook", "telegram"] = "none"  # none: the program says so and exits 0
    webhook_url_env: EnvName = "ORACLE_WEBHOOK_URL"  # sink webhook: JSON POSTed to this variable's URL
    telegram_api: str = Field(default="https://api.telegram.org", pattern=r"^https?://[^\s/]+")
    token_env: EnvName = "ORACLE_TELEGRAM_TOKEN"  # sink telegram: the bot's token (POST <api>/bot<token>/sendMessage)
    chat_id_env: EnvName = "ORACLE_TELEGRAM_CHAT_ID"  # ... to this chat
    severities: list[Literal["info", "warning", "critical"]] = ["warning", "critical"]  # alerts sent
    external_closes: bool = True  # a position closed at the broker not by us (closed.<SYM> with external)
    session_summary: bool = True  # the session's summary at its end (the store's SESSION_SUMMARY event)
    interval_s: PosFloat = 10.0  # at most one message per interval: a burst is folded into the next one
    max_lines: PosInt = 20  # lines of one message (kinds beyond are counted in its last line)
    retry_initial_s: PosFloat = 1.0  # a failed POST is retried after this, doubling each time ...
    retry_max_s: PosFloat = 300.0  # ... up to this
    timeout_s: PosFloat = 10.0  # one POST
    store_poll_s: PosFloat = 5.0  # the store is read this often (0.5 s while STOPPING): summaries, what was missed
    db_file: str = "notifier.db"  # under data_dir: every notice and message, pending until the endpoint says 2xx
    sub_hwm: PosInt = 10_000  # the SUB socket's queue: a slow notifier drops (and counts), never slows a publisher


class Web(_Section):
    """``oracle web`` (services/web/): the read-only dashboard, a supervisord program off the trading path."""

    host: str = "127.0.0.1"  # any other address needs a token (token_env set in the environment)
    port: int = Field(default=8088, ge=0, le=65535)  # 0: any free port (the URL is printed and logged)
    token_env: str = Field(default="ORACLE_WEB_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # the token's variable
    max_clients: PosInt = 8  # live browser connections at once; more are answered 503
    client_queue: PosInt = 64  # updates waiting per browser; a browser that falls this far behind is dropped
    update_interval_s: PosFloat = 0.25  # browsers get the changes at most this often
    curve_points: PosInt = 2000  # points of the equity curve kept (one per bar time)
    alerts: PosInt = 50  # alerts and halts kept
    history_timeout_ms: PosInt = 3000  # each read of the store and the orchestrator's status at start
    nice: int = Field(default=10, ge=0, le=19)  # CPU priority (Unix nice): off the trading path, it yields


class Logging(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Config(_Section):
    version: str
    run_dir: str = "var/run"
    data_dir: str = "var/data"
    close_on_exit: bool = False
    close_on_day_change: bool = False
    endpoints: dict[str, Endpoints] = {}  # by program name (a service, or a shard: preditor-0)
    runtime: ServiceRuntime = ServiceRuntime()
    orchestrator: Orchestrator = Orchestrator()
    health: Health = Health()
    broker: Broker = Broker()
    connector: ConnectorSettings = ConnectorSettings()
    preditor: Preditor = Preditor()
    executor: Executor = Executor()
    paper: Paper = Paper()
    persistence: Persistence = Persistence()
    notifier: NotifierSettings = NotifierSettings()
    wire: Wire = Wire()
    web: Web = Web()
    logging: Logging = Logging()
    # where relative paths resolve; set by the loader, not by the file
    home: str = ""

    @model_validator(mode="after")
    def _endpoints_are_safe(self) -> Config:
        try:
            self.preditor_shards()
        except programs.ShardError as exc:
            raise ValueError(f"preditor: {exc}") from None
        known = self.programs()
        for name in self.endpoints:
            if name not in known:
                raise ValueError(f"endpoints.{name}: not a program of this configuration ({', '.join(known)})")
        for service in known:
            for kind in ("pub", "rep"):
                check_endpoint(self.endpoint(service, kind), f"endpoints.{service}.{kind}", self.wire.curve)
        for host, remote in self.orchestrator.remote_hosts.items():
            check_endpoint(remote.agent, f"orchestrator.remote_hosts.{host}.agent", self.wire.curve)
        return self

    def preditor_shards(self) -> dict[str, tuple[str, ...]]:
        """Preditor program name -> its symbols (common/programs.py: explicit lists, else round robin)."""
        p = self.preditor
        return programs.assign(list(self.connector.symbols), p.shards, p.assignment)

    def workers(self) -> tuple[str, ...]:
        """Every program the orchestrator watches, in the seed's order: the preditor's shards in its place."""
        preditors = programs.shard_names("preditor", self.preditor.shards)
        return tuple(p for s in WORKERS for p in (preditors if s == "preditor" else (s,)))

    def programs(self) -> tuple[str, ...]:
        """Every program with endpoints: the orchestrator and the workers."""
        return ("orchestrator", *self.workers())

    def of_kind(self, kind: str) -> tuple[str, ...]:
        """The programs of one service kind (the preditor's shards, or the service alone)."""
        return tuple(p for p in self.programs() if programs.kind_of(p) == kind)

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else Path(self.home) / p

    def endpoint(self, service: str, kind: Literal["pub", "rep"]) -> str:
        override = self.endpoints.get(service)
        chosen = getattr(override, kind) if override else None
        return chosen or f"ipc://{self.path(self.run_dir)}/{service}.{kind}"

    def publishers(self) -> dict[str, str]:
        return {s: self.endpoint(s, "pub") for s in self.programs()}


def notifier_env_errors(cfg: Config, env: dict[str, str] | None = None) -> list[str]:
    """What the notifier's sink needs from the environment and does not find (empty: nothing missing), each error
    naming the key and the variable; for `oracle check-config` and the notifier's start."""
    env = dict(os.environ) if env is None else env
    n = cfg.notifier
    errors: list[str] = []

    def need(key: str, var: str, what: str) -> str:
        value = env.get(var, "").strip()
        if not value:
            errors.append(f"notifier.{key}: environment variable {var} is not set ({what}, sink {n.sink})")
        return value

    if n.sink == "webhook":
        url = need("webhook_url_env", n.webhook_url_env, "the webhook's URL")
        if url and urlsplit(url).scheme not in ("http", "https"):
            errors.append(f"notifier.webhook_url_env: {n.webhook_url_env} is not an http(s) URL")
    elif n.sink == "telegram":
        need("token_env", n.token_env, "the Telegram bot's token")
        need("chat_id_env", n.chat_id_env, "the Telegram chat id")
    return errors


def check_endpoint(endpoint: str, key: str, curve: bool = False) -> None:
    """A supported endpoint; a tcp:// one off loopback only when ``curve`` (wire.curve) is on."""
    scheme, _, rest = endpoint.partition("://")
    if scheme == "ipc":
        if len(rest) > _IPC_PATH_MAX:
            raise ValueError(f"{key}: ipc path is {len(rest)} characters, the limit is {_IPC_PATH_MAX}: {rest}")
    elif scheme == "tcp":
        host = urlsplit(f"tcp://{rest}").hostname or ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback and not curve:
            # CURVE is mandatory off loopback: refuse rather than expose.
            raise ValueError(f"{key}: tcp endpoint {endpoint} is not on loopback; off-host endpoints need CURVE "
                             "(wire.curve: true)")
    elif scheme != "inproc":
        raise ValueError(f"{key}: unsupported endpoint scheme in {endpoint!r} (use ipc:// or tcp://)")


# ---- loading ---------------------------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


def expand(node: Any, env: dict[str, str], path: str = "", unset: list[str] | None = None) -> Any:
    """Expand ``${VAR}`` / ``${VAR:default}`` in every string value; unset required vars are errors. With ``unset``
    (a list), every error is appended there (each naming its key) and an unset variable expands to "", so the
    caller can report all of them at once; without it, the first raises ConfigError."""
    if isinstance(node, dict):
        return {k: expand(v, env, f"{path}.{k}" if path else str(k), unset) for k, v in node.items()}
    if isinstance(node, list):
        return [expand(v, env, f"{path}[{i}]", unset) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        error = f"{path}: environment variable {name} is not set (write ${{{name}:default}} for a default)"
        if unset is None:
            raise ConfigError(error)
        unset.append(error)
        return ""

    return _VAR.sub(sub, node)


REPLACE_MARK = "!"  # an overlay key ``name!`` replaces the base's map ``name`` instead of merging into it


def merge(base: Any, overlay: Any, path: str = "") -> Any:
    """The overlay over the base: maps merge key by key, anything else replaces; ``key!`` (REPLACE_MARK) replaces
    the base's map whole. ConfigError naming the key for a mark on something that is not a map, or a key given both
    with and without the mark."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for k, v in overlay.items():
            key = k
            if isinstance(k, str) and k.endswith(REPLACE_MARK):
                key = k[: -len(REPLACE_MARK)]
                where = f"{path}.{k}" if path else k
                if not key:
                    raise ConfigError(f"{where}: a replace mark needs a key before it ({k!r})")
                if key in overlay:
                    raise ConfigError(f"{where}: {key} is given both to merge ({key}) and to replace ({k}); keep one")
                if not isinstance(v, dict):
                    raise ConfigError(f"{where}: the replace mark is for a map, and this value is a "
                                      f"{type(v).__name__} (a list or a value always replaces: write {key}:)")
                out[key] = _unmarked(v, f"{path}.{key}" if path else key)
                continue
            sub = f"{path}.{k}" if path else str(k)
            out[key] = merge(base[key], v, sub) if key in base else _unmarked(v, sub)
        return out
    return _unmarked(overlay, path)


def _unmarked(node: Any, path: str) -> Any:
    """``node`` with no replace mark left inside it (a mark means nothing where there is nothing to merge into):
    ConfigError naming the key."""
    if isinstance(node, dict):
        for k, v in node.items():
            where = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and k.endswith(REPLACE_MARK):
                raise ConfigError(f"{where}: a replace mark ({REPLACE_MARK}) is only meaningful in an overlay, over "
                                  "a map of the base configuration")
            _unmarked(v, where)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _unmarked(v, f"{path}[{i}]")
    return node


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a map, not a {type(data).__name__}")
    return data


def default_path(env: dict) -> Path:
    """The base file when none is given: $ORACLE_CONFIG, else ORACLE_HOME's config/default.yaml."""
    if env.get("ORACLE_CONFIG"):
        return Path(env["ORACLE_CONFIG"])
    return home(env) / "config" / "default.yaml"


def default_overlay(env: dict) -> Path | None:
    if env.get("ORACLE_OVERLAY"):
        return Path(env["ORACLE_OVERLAY"])
    local = home(env) / "config" / "local.yaml"
    return local if local.exists() else None


def select(path: str | Path | None = None, overlay: str | Path | None = None,
           env: dict | None = None) -> tuple[Path, Path | None]:
    """The files of the configuration, chosen one way for every process and command: the given path, else
    $ORACLE_CONFIG, else config/default.yaml; the given overlay, else $ORACLE_OVERLAY, else config/local.yaml when it
    exists (else none)."""
    env = dict(os.environ) if env is None else env
    return (Path(path) if path else default_path(env)), (Path(overlay) if overlay else default_overlay(env))


def add_arguments(parser: Any, default: Any = None) -> None:
    """``--config`` and ``--overlay`` on an argparse parser, as every process and ``oracle`` command takes them
    (resolved by ``select``: None falls back to the environment, then the defaults)."""
    parser.add_argument("--config", default=default, metavar="PATH",
                        help="config file (default $ORACLE_CONFIG, else config/default.yaml)")
    parser.add_argument("--overlay", default=default, metavar="PATH",
                        help="overlay over it (default $ORACLE_OVERLAY, else config/local.yaml when it exists)")


def load(path: str | Path | None = None, overlay: str | Path | None = None, env: dict | None = None) -> Config:
    """Select (``select``), merge, expand and validate. Raises ConfigError listing every error found, each naming its
    key, under one header naming the files."""
    env = dict(os.environ) if env is None else env
    base_path, overlay_path = select(path, overlay, env)
    src = f"{base_path}" + (f" + {overlay_path}" if overlay_path else "")
    data = _read_yaml(base_path)
    try:
        data = _unmarked(data, "")
        if overlay_path is not None:
            data = merge(data, _read_yaml(overlay_path))
    except ConfigError as exc:
        raise ConfigError(f"invalid configuration ({src}):\n  {exc}") from None
    unset: list[str] = []
    data = expand(data, env, unset=unset)
    data["home"] = str(home(env))
    lines = list(unset)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        unset_keys = {e.split(":", 1)[0] for e in unset}
        for e in exc.errors():
            key = ".".join(str(p) for p in e["loc"]) or "(top level)"
            if any(key == k or key.startswith((f"{k}.", f"{k}[")) for k in unset_keys):
                continue  # said already: its variable is not set
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = "unknown key"
            lines.append(f"{key}: {msg}")
        lines = lines or ["(no detail)"]
    if lines:
        raise ConfigError(f"invalid configuration ({src}):\n  " + "\n  ".join(lines)) from None
    return cfg
