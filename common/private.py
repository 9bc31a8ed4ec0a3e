"""Files the system makes are its user's alone: logs, the store (oracle.db), state files, journals and spools hold
account facts and order history, so other users of the host may not read them.

``keep_private`` sets the process's umask (files 0600, directories 0700 from then on; supervisord sets the same for
its own logs and the processes it spawns, deploy/supervisord.conf) and tightens what an older version left wider
under the system's own directories (var/: data, run, log). Only this user's files are touched, and a mode only ever
loses the group's and others' bits."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

PRIVATE_UMASK = 0o077  # no bit for the group or others
log = logging.getLogger(__name__)


def keep_private(dirs: Iterable[Path] = ()) -> int:
    """Set the private umask, then tighten ``dirs`` and everything under them; how many modes it changed."""
    os.umask(PRIVATE_UMASK)
    return sum(tighten(Path(d)) for d in dict.fromkeys(dirs))


def tighten(root: Path) -> int:
    """Take the group's and others' bits off ``root`` and everything under it that this user owns (symlinks are
    not followed); how many modes it changed. Missing paths and files it may not change are left as they are."""
    changed = 0
    uid = os.geteuid()
    for path in _walk(root):
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode) or st.st_uid != uid or not st.st_mode & 0o077:
                continue
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077)
            changed += 1
        except OSError as exc:  # gone meanwhile, or not ours to change: it stays as it was
            log.debug("cannot tighten %s: %s", path, exc)
    if changed:
        log.info("%d file mode(s) under %s made private (an older version left them readable by others)",
                 changed, root)
    return changed


def _walk(root: Path) -> Iterable[str]:
    if not os.path.lexists(root):
        return
    yield str(root)
    if os.path.isdir(root) and not os.path.islink(root):
        for dirpath, dirnames, filenames in os.walk(root):
            for name in (*dirnames, *filenames):
                yield os.path.join(dirpath, name)
