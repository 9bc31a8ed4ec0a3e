"""Under the real supervisord with deploy/supervisord.conf: every file the system makes (supervisord's log, each
program's log, the store, the state files and journals) is its user's alone, directories 0700."""

from __future__ import annotations

import os
import stat

from harness import Home


def test_every_file_the_system_makes_is_private(tmp_path):
    home = Home(tmp_path)
    try:
        # as scripts/run.sh starts it: under umask 077 (the conf's umask=077 holds only once supervisord daemonizes,
        # not with -n as here; every program sets its own anyway)
        old = os.umask(0o077)
        try:
            home.start_supervisord()
        finally:
            os.umask(old)
        home.wait_state("RUNNING", timeout=60)
        var = home.root / "var"
        cfg = home.config()
        expected = [var / "log" / "supervisord.log", cfg.path(cfg.persistence.sqlite_path),
                    cfg.path(cfg.data_dir) / cfg.connector.state_file]
        assert all(p.exists() for p in expected), expected
        assert any(p.name.startswith("connector") for p in (var / "log").iterdir())  # the programs' logs
        wide = []
        for root, dirs, files in os.walk(var):
            for name in (*dirs, *files):
                path = os.path.join(root, name)
                st = os.lstat(path)
                if stat.S_ISSOCK(st.st_mode) or stat.S_ISLNK(st.st_mode):
                    continue
                if stat.S_IMODE(st.st_mode) & 0o077:
                    wide.append(f"{path} {stat.S_IMODE(st.st_mode):o}")
        assert wide == []
    finally:
        home.close()
