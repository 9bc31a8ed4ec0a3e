"""Program names and the preditor's shards (common/programs.py), and how the configuration validates them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from common import config, programs
from common.programs import ShardError, assign, kind_of, shard_name, shard_names

SYMS = [f"S{i:02d}" for i in range(20)]


def test_a_numbered_program_is_of_its_kind():
    assert [kind_of(p) for p in ("preditor-0", "preditor-12", "preditor", "executor", "sim-broker", "preditor-01")] \
        == ["preditor", "preditor", "preditor", "executor", "sim-broker", "preditor-01"]


def test_one_shard_keeps_the_plain_name_and_n_shards_are_numbered():
    assert shard_names("preditor", 1) == ("preditor",)
    assert shard_names("preditor", 3) == ("preditor-0", "preditor-1", "preditor-2")
    assert shard_name("preditor", 1, None) == shard_name("preditor", 1, 0) == "preditor"
    assert shard_name("preditor", 2, 1) == "preditor-1"


@pytest.mark.parametrize(("shards", "index", "message"), [
    (2, None, "start each process with --shard N (0..1)"),
    (2, 2, "shard 2 does not exist (0..1)"),
    (1, 1, "shard 1 does not exist (only 0)"),
    (0, None, "at least 1"),
])
def test_a_shard_that_does_not_exist_is_refused_with_why(shards, index, message):
    with pytest.raises(ShardError, match=message.replace("(", r"\(").replace(")", r"\)")):
        shard_name("preditor", shards, index)


def test_round_robin_in_the_configured_order_puts_every_symbol_in_exactly_one_shard():
    got = assign(SYMS, 2)
    assert got == {"preditor-0": tuple(SYMS[0::2]), "preditor-1": tuple(SYMS[1::2])}
    assert sorted(s for own in got.values() for s in own) == SYMS
    assert assign(SYMS, 1) == {"preditor": tuple(SYMS)}
    assert assign(SYMS, 20)["preditor-19"] == ("S19",)
    # stable: the same configuration gives the same assignment, and a symbol added at the end moves no other
    assert assign(SYMS, 3) == assign(list(SYMS), 3)
    more = assign([*SYMS, "S20"], 3)
    assert all(set(assign(SYMS, 3)[n]) <= set(more[n]) for n in more)


def test_explicit_lists_are_taken_as_they_are():
    explicit = {"preditor-0": SYMS[:15], "preditor-1": SYMS[15:]}
    assert assign(SYMS, 2, explicit) == {k: tuple(v) for k, v in explicit.items()}


@pytest.mark.parametrize(("shards", "explicit", "message"), [
    (21, None, "21 shards for 20 symbols"),
    (2, {"preditor-0": SYMS[:10], "preditor-1": SYMS[9:]}, "S09 is in preditor-0 and in preditor-1"),
    (2, {"preditor-0": SYMS[:10], "preditor-1": SYMS[10:19]}, "S19 in no shard"),
    (2, {"preditor-0": SYMS, "preditor-1": []}, "assignment.preditor-1: no symbol"),
    (2, {"preditor-0": SYMS[:10], "preditor-1": [*SYMS[10:], "XAUUSD"]}, "XAUUSD is not a configured symbol"),
    (2, {"preditor-0": SYMS[:10], "preditor-2": SYMS[10:]}, "names preditor-2, not shards of 2"),
])
def test_a_bad_assignment_is_refused_naming_what_is_wrong(shards, explicit, message):
    with pytest.raises(ShardError, match=message):
        assign(SYMS, shards, explicit)


def load(tmp_path: Path, overlay: dict) -> config.Config:
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return config.load(config.REPO_ROOT / "config" / "default.yaml", path, env={"ORACLE_HOME": str(tmp_path)})


def symbols_overlay(n: int, **preditor) -> dict:
    return {"connector": {"symbols": {s: "H1" for s in SYMS[:n]}}, "preditor": preditor}


def test_the_configuration_gives_every_process_the_same_programs_and_endpoints(tmp_path):
    one = load(tmp_path, {})
    assert one.workers() == config.WORKERS and one.of_kind("preditor") == ("preditor",)
    assert one.preditor_shards() == {"preditor": ("EURUSD",)}
    two = load(tmp_path, symbols_overlay(20, shards=2))
    assert two.workers() == ("persistence", "preditor-0", "preditor-1", "executor", "paper", "connector")
    assert two.programs()[0] == "orchestrator" and two.of_kind("preditor") == ("preditor-0", "preditor-1")
    configured = list(two.connector.symbols)  # the overlay's symbols after the base file's EURUSD
    assert configured == ["EURUSD", *SYMS] and two.preditor_shards()["preditor-1"] == tuple(configured[1::2])
    assert two.endpoint("preditor-1", "pub").endswith("/var/run/preditor-1.pub")
    assert set(two.publishers()) == set(two.programs())
    own = load(tmp_path, {**symbols_overlay(2, shards=2), "endpoints": {"preditor-1": {"pub": "tcp://127.0.0.1:7201"}}})
    assert own.endpoint("preditor-1", "pub") == "tcp://127.0.0.1:7201"


@pytest.mark.parametrize(("overlay", "message"), [
    (symbols_overlay(1, shards=3), "preditor: 3 shards for 2 symbols"),
    (symbols_overlay(2, shards=0), "preditor.shards: Input should be greater than 0"),
    (symbols_overlay(3, shards=2, assignment={"preditor-0": ["EURUSD", "S00"], "preditor-1": ["S01"]}),
     "preditor: assignment: S02 in no shard"),
    ({"endpoints": {"preditor-0": {"pub": "ipc:///tmp/x.pub"}}}, "endpoints.preditor-0: not a program"),
])
def test_a_bad_shard_configuration_is_an_error_naming_the_key(tmp_path, overlay, message):
    with pytest.raises(config.ConfigError, match=message):
        load(tmp_path, overlay)


def test_a_shards_status_is_decoded_as_its_kinds_record():
    from common import messages

    assert messages.STATUS_RESULTS.pick({"service": "preditor-1"}) is messages.PreditorStatus
    assert messages.STATUS_RESULTS.pick({"service": "tool"}) is messages.ProcessStatus
    assert programs.kind_of("preditor-1") == "preditor"
