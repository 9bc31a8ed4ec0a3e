"""Is the system up at all? Answered before any request, from what the operator's host shows at once: supervisord's
control socket (``orchestrator.supervisor_socket``) accepts a connection, or else (services started by hand, without
supervisord) the orchestrator's own endpoint does. A socket file left by a dead process refuses the connection at
once, so a system that is down is said so in milliseconds, without waiting a request timeout.
"""

from __future__ import annotations

import socket
from pathlib import Path

from common import config

CONNECT_TIMEOUT_S = 0.2  # a tcp endpoint on another host: the longest a connect is waited


def _unix_accepts(path: Path) -> bool:
    if not path.exists():
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(CONNECT_TIMEOUT_S)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _endpoint_accepts(endpoint: str) -> bool:
    if endpoint.startswith("ipc://"):
        return _unix_accepts(Path(endpoint.removeprefix("ipc://")))
    if endpoint.startswith("tcp://"):
        host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
                return True
        except (OSError, ValueError):
            return False
    return True  # another transport: not ours to probe, the request will tell


def system_down(cfg: config.Config) -> str:
    """Why the system is not running ("" when it may be: supervisord or the orchestrator accepts connections)."""
    sock = cfg.path(cfg.orchestrator.supervisor_socket)
    if _unix_accepts(sock):
        return ""
    if _endpoint_accepts(cfg.endpoint("orchestrator", "rep")):
        return ""  # no supervisord here, but an orchestrator started by hand
    what = "no socket" if not sock.exists() else "its socket refuses connections"
    return f"supervisord is not running ({what} at {sock}) and the orchestrator does not answer"
