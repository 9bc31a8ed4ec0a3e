"""What a configuration needs from the environment before its programs can start, checked in one place (pure: the
configuration and the environment are values given to it).

``oracle check-config`` asks it for every program and each process asks it for itself at its start
(``common/runtime.py``), so the two never disagree. A problem found here is permanent: a restart cannot fix it (a
person sets the variable, or changes the configuration), so the process reports it once and exits without being
restarted (``common/failure.py``), instead of being restarted into HALTED.

- ``broker.type: ctrader``: the cTrader credentials (CTRADER_CREDENTIALS), a numeric CTRADER_ACCOUNT_ID, a host for
  ``broker.environment`` (the connector's);
- ``persistence.sinks.supabase.enabled``: SUPABASE_URL and SUPABASE_KEY; ``persistence.sinks.postgres.enabled``: a
  ``dsn`` (persistence's);
- ``notifier.sink``: the webhook's URL or the Telegram bot's token and chat (``config.notifier_env_errors``, which the
  notifier also runs at its start: it says so and exits 2, EXITED and not restarted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from common.config import Config, notifier_env_errors
from common.programs import kind_of

# the cTrader Open API application and account (CTRADER_REFRESH_TOKEN is optional: without it, an expired access
# token needs a person, `oracle broker-token`)
CTRADER_CREDENTIALS = ("CTRADER_CLIENT_ID", "CTRADER_CLIENT_SECRET", "CTRADER_ACCESS_TOKEN", "CTRADER_ACCOUNT_ID")
CTRADER_REFRESH = "CTRADER_REFRESH_TOKEN"
SUPABASE_ENV = ("SUPABASE_URL", "SUPABASE_KEY")


@dataclass(frozen=True, slots=True)
class Problem:
    """Something the configuration needs and does not have; ``service`` is the kind of program it stops."""

    service: str
    key: str  # the configuration key that asks for it
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message} ({self.service} cannot start)"


def _unset(env: Mapping[str, str], names: Iterable[str]) -> list[str]:
    return [n for n in names if not env.get(n)]


def _variables(names: list[str]) -> str:
    return f"environment variable{'s' if len(names) > 1 else ''} {', '.join(names)} not set"


def problems(cfg: Config, env: Mapping[str, str], program: str | None = None) -> list[Problem]:
    """Every problem of the configuration with this environment; only those of ``program`` (a program name, a shard
    ``preditor-1`` being of the kind ``preditor``) when given. Empty: nothing is missing."""
    found: list[Problem] = []
    b = cfg.broker
    if b.type == "ctrader":
        missing = _unset(env, CTRADER_CREDENTIALS)
        if missing:
            found.append(Problem("connector", "broker.type", f"ctrader needs the credentials: {_variables(missing)}"))
        account = env.get("CTRADER_ACCOUNT_ID", "")
        if account and not account.strip().isdigit():
            found.append(Problem("connector", "broker.type",
                                 "CTRADER_ACCOUNT_ID must be the numeric ctidTraderAccountId (not the login)"))
        if not b.hosts.get(b.environment):
            found.append(Problem("connector", "broker.hosts", f"no host for broker.environment {b.environment!r}"))
    sinks = cfg.persistence.sinks
    if sinks.supabase.enabled:
        missing = _unset(env, SUPABASE_ENV)
        if missing:
            found.append(Problem("persistence", "persistence.sinks.supabase", f"enabled, but {_variables(missing)}"))
    if sinks.postgres.enabled and not sinks.postgres.dsn.strip():
        found.append(Problem("persistence", "persistence.sinks.postgres.dsn",
                             "required when the postgres sink is enabled (e.g. \"${ORACLE_PG_DSN}\" with "
                             "ORACLE_PG_DSN set)"))
    for error in notifier_env_errors(cfg, dict(env)):
        key, _, message = error.partition(": ")
        found.append(Problem("notifier", key, message))
    if program is None:
        return found
    kind = kind_of(program)
    return [p for p in found if p.service == kind]


def cause(found: list[Problem]) -> str:
    """One line for the operator: every problem, ``; `` between them."""
    return "; ".join(f"{p.key}: {p.message}" for p in found)
