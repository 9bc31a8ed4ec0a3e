"""Permanent failures: a program that cannot start until a person acts (a credential not in the environment, an invalid
file of its configuration, a CURVE key missing) says so once, where the orchestrator and the operator's commands look,
and exits without being restarted.

- The process writes ``<run_dir>/failed/<program>.json`` ({program, pid, cause, ts}) and exits with EXIT_PERMANENT
  after having been up HOLD_S since its start; supervisord (deploy/supervisord.conf: ``autorestart=unexpected``,
  ``exitcodes=78``) then shows it EXITED and does not start it again. supervisord counts an exit before the
  program's ``startsecs`` (2) as a failed start and retries it whatever the exit code: hence the hold.
- supervisord's view (``services/orchestrator/supervisor.py``) carries the cause of the program's current start:
  a record older than that start is a past life's, and ignored. Each process removes its own record at its start.
- A crash (a traceback, exit 1) is not permanent: supervisord restarts it, and the watchdog counts it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from common.config import Config

EXIT_PERMANENT = 78  # sysexits.h EX_CONFIG; the only expected exit code of the services (deploy/supervisord.conf)
HOLD_S = 3.0  # > supervisord's startsecs (2): the start counts as a run, the exit as expected, nothing is retried
SUBDIR = "failed"


@dataclass(frozen=True, slots=True)
class Failure:
    program: str
    pid: int
    cause: str  # in words, for the operator: what is missing and what to do
    ts: float  # wall-clock seconds when it was found


def directory(cfg: Config) -> Path:
    return cfg.path(cfg.run_dir) / SUBDIR


def record_path(folder: Path, program: str) -> Path:
    return folder / f"{program}.json"


def write(folder: Path, failure: Failure) -> Path:
    """The record, written atomically (a reader never sees half of it)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = record_path(folder, failure.program)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(asdict(failure)))
    os.replace(tmp, path)
    return path


def clear(folder: Path, program: str) -> None:
    """A new start of the program: its past life's record goes."""
    with contextlib.suppress(FileNotFoundError):
        record_path(folder, program).unlink()


def read(folder: Path, program: str) -> Failure | None:
    """The program's record; None when there is none. A record that does not parse is reported as such (it is ours:
    something else wrote or cut it)."""
    path = record_path(folder, program)
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return Failure(program, 0, f"its failure record {path} cannot be read: {exc.strerror}", 0.0)
    try:
        data = json.loads(text)
        return Failure(str(data["program"]), int(data["pid"]), str(data["cause"]), float(data["ts"]))
    except (ValueError, KeyError, TypeError):
        return Failure(program, 0, f"its failure record {path} is not a failure record", 0.0)


def of_start(folder: Path, program: str, started: float) -> str:
    """The cause recorded by the program's start at ``started`` (supervisord's ``start``: whole wall seconds) or
    later; "" when there is none (or only an older life's)."""
    found = read(folder, program)
    return found.cause if found is not None and found.ts >= started else ""


def hold_then_exit_code(started_mono: float, env: Mapping[str, str] | None = None,
                        sleep: Callable[[float], None] = time.sleep) -> int:
    """Under supervisord (which sets SUPERVISOR_ENABLED in its programs' environment), wait until the process has
    been up HOLD_S (see the module's note); then the exit code to return. Started by hand: at once."""
    env = os.environ if env is None else env
    remaining = HOLD_S - (time.monotonic() - started_mono)
    if env.get("SUPERVISOR_ENABLED") and remaining > 0:
        sleep(remaining)
    return EXIT_PERMANENT
