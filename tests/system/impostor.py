"""A peer that is not who it may be: a process that sends requests to the running system's REP sockets as one
identity (a parameter: today the environment supervisord gives its programs, so the process looks like ``paper``;
with CURVE keys, the key it holds), each on a fresh REQ socket, and reports every answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

# sends each request (endpoint, op, args) and prints the answers as JSON: "ok" or [code, message]
SENDER = """
import json, sys, msgpack, zmq
ctx = zmq.Context()
out = []
for endpoint, op, args in json.loads(sys.stdin.read()):
    if args.get("pid") == "SELF":  # a hello in the sender's own pid
        args["pid"] = __import__("os").getpid()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    sock.send(msgpack.packb({"v": 1, "op": op, "id": "spoof-1", "args": args}))
    if sock.poll(10000):
        reply = msgpack.unpackb(sock.recv())
        out.append("ok" if reply["ok"] else [reply["error"]["code"], reply["error"]["message"]])
    else:
        out.append(["no answer", ""])
    sock.close()
print(json.dumps({"pid": __import__("os").getpid(), "answers": out}))
"""


@dataclass(frozen=True)
class Identity:
    """Who the impostor is on the wire: its name there and what makes it so."""

    name: str
    env: dict[str, str] = field(default_factory=dict)


LOOKS_LIKE_PAPER = Identity("paper", {"SUPERVISOR_PROCESS_NAME": "paper"})
OPERATOR_SCRIPT = Identity("operator")  # a process of the system's user that is no service


def send(identity: Identity, requests: list[tuple[str, str, dict]], env: dict[str, str]) -> tuple[int, list]:
    """(the impostor's pid, its answers), one per request, in order."""
    child = {k: v for k, v in {**os.environ, **env}.items() if k != "SUPERVISOR_PROCESS_NAME"}
    res = subprocess.run([sys.executable, "-c", SENDER], input=json.dumps(requests), capture_output=True, text=True,
                         env={**child, **identity.env}, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    return out["pid"], out["answers"]
