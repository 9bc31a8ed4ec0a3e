"""The persistence process: a query with a time out of range is refused naming it (no handler traceback, the
process answers on), and what the process makes (the store, its directory) is its user's alone, while a file an
older version left readable by others is made private when the process starts."""

from __future__ import annotations

import math
import os
import stat

import pytest
from harness import Home
from pers_service_helpers import boot_persistence

from common import bus, messages


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def home(tmp_path):
    h = Home(tmp_path)
    yield h
    h.close()


@pytest.fixture(scope="module")
def booted(tmp_path_factory):
    """One persistence process for every out-of-range query (each asked after the ones before: it answers on)."""
    h = Home(tmp_path_factory.mktemp("pers"))
    try:
        boot_persistence(h)
        yield h
    finally:
        h.close()


@pytest.mark.parametrize("since", [1e300, -1e300, math.nan, math.inf, -1, 10**15, "9999-12-31T23:59:59-14:00",
                                   "x" * 10_000])
def test_a_query_time_out_of_range_is_refused_naming_it(booted, since):
    home = booted
    assert home.procs["persistence"].poll() is None, "the persistence process exited"
    with pytest.raises(bus.RequestFailed) as info:
        home.request("persistence", "query", messages.QueryArgs("events", {"since": since}))
    assert info.value.code == "bad_args" and "where.since" in info.value.message
    assert len(info.value.message) < 300
    assert home.request("persistence", "query", messages.QueryArgs("events", {"since": 0})).table == "events"
    assert "Traceback" not in home.log("persistence")


def test_the_store_and_its_directories_are_private_and_older_files_are_tightened(home):
    cfg = home.config()
    data = cfg.path(cfg.data_dir)
    data.mkdir(parents=True)
    os.chmod(data, 0o755)
    old = data / "left-by-an-older-version.json"
    old.write_text("{}")
    os.chmod(old, 0o644)
    boot_persistence(home)
    db = cfg.path(cfg.persistence.sqlite_path)
    assert db.exists() and mode(db) == 0o600
    for made in db.parent.iterdir():  # the store's journal files too
        if made.is_file():
            assert mode(made) & 0o077 == 0, made
    assert mode(old) == 0o600 and mode(data) == 0o700
    assert mode(cfg.path(cfg.run_dir)) == 0o700
    log_dir = home.root / "var" / "log"  # made by the test (umask 022), tightened by the process
    assert mode(log_dir) == 0o700 and mode(log_dir / "persistence.log") == 0o600
