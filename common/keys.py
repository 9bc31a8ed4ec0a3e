"""CURVE keys of the wire: one keypair per service program and one for the operator (the ``oracle`` CLI).

A keys directory (``wire.keys_dir``, mode 0700) holds, per name, ``<name>.key`` (the public key, in pyzmq's
certificate format) and, for the names that run on this host, ``<name>.key_secret`` (both keys, mode 0600). On a
two-host install each host makes the secrets of its own programs and the operator copies the other host's public
``.key`` files across (README, deploy/): a public key is all a peer needs to be admitted, a secret never travels.

A :class:`Keyring` is what a process knows: every public key (name -> key, key -> name) and its own secret. The
name a key file carries (its stem) is the name the ZAP handler gives a peer (``User-Id``), e.g. ``executor``,
``preditor-1``, ``operator``.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from common import config

OPERATOR = "operator"  # the key of the oracle CLI: ctl, tap, top, broker-token ...
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
_NAME = re.compile(r"^[a-z][a-z0-9_]*(-[0-9]+)?$")  # a service, a program `<kind>-<n>`, or operator


class KeysError(config.ConfigError):
    """A key that is missing, unreadable or malformed: the message names the file."""


def names(programs: Iterable[str]) -> list[str]:
    """Every name that needs a key: the service programs (``Config.programs()``: the preditor's shards each), the
    auxiliary programs (web, notifier) and the operator. A program ``<kind>-<n>`` has the role ``<kind>``
    (``common.programs.kind_of``)."""
    return [*dict.fromkeys([*programs, *config.AUXILIARY]), OPERATOR]


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise KeysError(f"invalid key name {name!r}: lowercase letters, digits and _, optionally -<n>")
    return name


def public_path(keys_dir: Path, name: str) -> Path:
    return keys_dir / f"{name}{PUBLIC_SUFFIX}"


def secret_path(keys_dir: Path, name: str) -> Path:
    return keys_dir / f"{name}{SECRET_SUFFIX}"


def init(keys_dir: Path, wanted: Iterable[str]) -> list[str]:
    """Make the keypair of every wanted name that has no key yet (never overwrites one, nor makes a secret beside a
    public key copied from another host); the directory is made 0700. The names made."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    made = []
    for name in wanted:
        check_name(name)
        if public_path(keys_dir, name).exists() or secret_path(keys_dir, name).exists():
            continue
        old = os.umask(0o077)  # the secret is 0600 from the moment it exists
        try:
            _, secret = zmq.auth.create_certificates(keys_dir, name)
        finally:
            os.umask(old)
        os.chmod(secret, 0o600)
        made.append(name)
    return made


def _load(path: Path) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeysError(f"cannot read CURVE key file {path}: {exc}") from None
    for what, key in (("public", public), ("secret", secret)):
        if key is not None and len(key) != 40:
            raise KeysError(f"CURVE key file {path}: the {what} key is not 40 Z85 characters")
    return public, secret


def load_publics(keys_dir: Path) -> dict[str, bytes]:
    """name -> Z85 public key of every ``<name>.key`` in the directory."""
    if not keys_dir.is_dir():
        raise KeysError(f"CURVE keys directory {keys_dir} does not exist (make it with `oracle keys init`)")
    mode = stat.S_IMODE(keys_dir.stat().st_mode)
    if mode & 0o022:  # whoever may add a .key here is admitted by every process
        raise KeysError(f"CURVE keys directory {keys_dir} is writable by others (mode {mode:o}): chmod 700 it")
    out = {}
    for path in sorted(keys_dir.glob(f"*{PUBLIC_SUFFIX}")):
        name = path.name.removesuffix(PUBLIC_SUFFIX)
        if _NAME.match(name):
            out[name] = _load(path)[0]
    return out


@dataclass(frozen=True)
class Keyring:
    """What one process knows: every peer's public key and its own keypair."""

    keys_dir: Path
    own: str
    public: bytes
    secret: bytes
    publics: dict[str, bytes]  # name -> Z85 public key
    by_key: dict[bytes, str]  # Z85 public key -> name

    def public_of(self, name: str) -> bytes:
        key = self.publics.get(name)
        if key is None:
            raise KeysError(f"no CURVE public key for {name}: {public_path(self.keys_dir, name)} is missing")
        return key

    def name_of(self, key: bytes) -> str | None:
        return self.by_key.get(key)


def load(keys_dir: Path, own: str) -> Keyring:
    """The keyring of the process named ``own``; KeysError naming the file when its secret or the directory is
    missing, unreadable, not private or malformed."""
    publics = load_publics(keys_dir)
    path = secret_path(keys_dir, own)
    if not path.exists():
        raise KeysError(f"CURVE secret key of {own} is missing: {path} (make it with `oracle keys init`)")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeysError(f"CURVE secret key file {path} is readable by others (mode {mode:o}): chmod 600 it")
    public, secret = _load(path)
    if secret is None:
        raise KeysError(f"CURVE secret key file {path} holds no secret-key")
    if publics.get(own, public) != public:
        raise KeysError(f"CURVE key files of {own} disagree: {public_path(keys_dir, own)} and {path}")
    publics = {**publics, own: public}
    return Keyring(keys_dir, own, public, secret, publics, {k: n for n, k in publics.items()})


def server_keys(cfg: config.Config, keyring: Keyring) -> dict[str, bytes]:
    """endpoint -> the public key of the program that binds it (its pub and rep), for the clients' handshakes."""
    out = {}
    for program in cfg.programs():
        key = keyring.publics.get(program)
        if key is None:
            continue  # a client that connects to it fails then, naming the missing file
        for kind in ("pub", "rep"):
            out[cfg.endpoint(program, kind)] = key
    agent = keyring.publics.get("agent")  # every host agent binds with the agent key (deploy/two-host/README.md)
    if agent is not None:
        for remote in cfg.orchestrator.remote_hosts.values():
            out[remote.agent] = agent
    return out


def secure_process(cfg: config.Config, own: str) -> Keyring | None:
    """With ``wire.curve`` on: load ``own``'s keyring and make every bus socket of this process CURVE
    (``bus.secure``); KeysError (a ConfigError naming the file) when a key is missing. None with curve off."""
    if not cfg.wire.curve:
        return None
    from common import bus  # bus imports nothing of this module; keys stays importable without a socket

    keyring = load(cfg.path(cfg.wire.keys_dir), own)
    bus.secure(keyring, own, server_keys(cfg, keyring))
    return keyring
