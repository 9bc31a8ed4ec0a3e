"""Configuration: ``config/default.yaml`` + an optional overlay, ``${VAR}`` expansion, validation.

- ``${VAR}`` takes the environment variable and is an error when it is unset (never the literal
  text); ``${VAR:default}`` falls back to ``default`` (which may be empty).
- The overlay is deep-merged over the base file (maps merge, everything else replaces).
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

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("orchestrator", "persistence", "preditor", "executor", "paper", "connector")
WORKERS = SERVICES[1:]
TIMEFRAMES = {"M1": 60, "M5": 300, "M15": 900, "M30": 1800, "H1": 3600, "H4": 14400, "D1": 86400}
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


class Orchestrator(_Section):
    heartbeat_timeout_s: PosFloat = 5.0
    stall_timeout_s: PosFloat = 15.0
    restart_limit: PosInt = 3  # R: more than R restarts ...
    restart_window_s: PosFloat = 60.0  # ... in T seconds escalates to HALTED
    step_timeout_s: PosFloat = 120.0
    supervisor_socket: str = "var/supervisor.sock"
    status_interval_s: PosFloat = 1.0


class Health(_Section):
    memory_limit_mb: PosFloat = 1000.0
    max_backlog: PosInt = 100
    bar_timeout_factor: PosFloat = 2.0  # a symbol is stale after factor x its timeframe ...
    bar_grace_s: float = Field(default=120.0, ge=0)  # ... plus this grace


class Broker(_Section):
    type: Literal["sim", "ctrader"] = "sim"
    environment: Literal["demo", "live"] = "demo"


class Preditor(_Section):
    models_dir: str = "models"
    warmup_bars: PosInt = 1000
    trusted_models: list[str] = []


class Executor(_Section):
    config_file: str = "config/executor_symbols.json"
    dry_run: bool = False
    enter_on_first_signal: bool = False


class Paper(_Section):
    enabled: bool = True
    initial_balance: PosFloat = 10000.0


class Persistence(_Section):
    sqlite_path: str = "var/data/oracle.db"


class Logging(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Config(_Section):
    version: str
    run_dir: str = "var/run"
    data_dir: str = "var/data"
    close_on_exit: bool = False
    close_on_day_change: bool = False
    endpoints: dict[Literal[SERVICES], Endpoints] = {}  # type: ignore[valid-type]
    runtime: ServiceRuntime = ServiceRuntime()
    orchestrator: Orchestrator = Orchestrator()
    health: Health = Health()
    broker: Broker = Broker()
    preditor: Preditor = Preditor()
    executor: Executor = Executor()
    paper: Paper = Paper()
    persistence: Persistence = Persistence()
    logging: Logging = Logging()
    # where relative paths resolve; set by the loader, not by the file
    home: str = ""

    @model_validator(mode="after")
    def _endpoints_are_safe(self) -> Config:
        for service in SERVICES:
            for kind in ("pub", "rep"):
                check_endpoint(self.endpoint(service, kind), f"endpoints.{service}.{kind}")
        return self

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else Path(self.home) / p

    def endpoint(self, service: str, kind: Literal["pub", "rep"]) -> str:
        override = self.endpoints.get(service)
        chosen = getattr(override, kind) if override else None
        return chosen or f"ipc://{self.path(self.run_dir)}/{service}.{kind}"

    def publishers(self) -> dict[str, str]:
        return {s: self.endpoint(s, "pub") for s in SERVICES}


def check_endpoint(endpoint: str, key: str) -> None:
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
        if not loopback:
            # CURVE is mandatory off loopback and is not built yet: refuse rather than expose.
            raise ValueError(f"{key}: tcp endpoint {endpoint} is not on loopback; off-host endpoints need CURVE")
    elif scheme != "inproc":
        raise ValueError(f"{key}: unsupported endpoint scheme in {endpoint!r} (use ipc:// or tcp://)")


# ---- loading ---------------------------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


def expand(node: Any, env: dict[str, str], path: str = "") -> Any:
    """Expand ``${VAR}`` / ``${VAR:default}`` in every string value; unset required vars are errors."""
    if isinstance(node, dict):
        return {k: expand(v, env, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [expand(v, env, f"{path}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{path}: environment variable {name} is not set (write ${{{name}:default}} for a default)")

    return _VAR.sub(sub, node)


def merge(base: Any, overlay: Any) -> Any:
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for k, v in overlay.items():
            out[k] = merge(base[k], v) if k in base else v
        return out
    return overlay


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
    return home(env) / "config" / "default.yaml"


def default_overlay(env: dict) -> Path | None:
    if env.get("ORACLE_OVERLAY"):
        return Path(env["ORACLE_OVERLAY"])
    local = home(env) / "config" / "local.yaml"
    return local if local.exists() else None


def load(path: str | Path | None = None, overlay: str | Path | None = None, env: dict | None = None) -> Config:
    """Load, merge, expand and validate. Raises ConfigError with the key in the message."""
    env = dict(os.environ) if env is None else env
    base_path = Path(path) if path else default_path(env)
    data = _read_yaml(base_path)
    overlay_path = Path(overlay) if overlay else default_overlay(env)
    if overlay_path is not None:
        data = merge(data, _read_yaml(overlay_path))
    data = expand(data, env)
    data["home"] = str(home(env))
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            key = ".".join(str(p) for p in e["loc"]) or "(top level)"
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = "unknown key"
            lines.append(f"{key}: {msg}")
        src = f"{base_path}" + (f" + {overlay_path}" if overlay_path else "")
        raise ConfigError(f"invalid configuration ({src}):\n  " + "\n  ".join(lines)) from None
