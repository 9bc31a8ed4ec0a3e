"""With the preditor in 2 shards every service object is wired to both (the objects of this process, no sockets
run): the executor, paper, persistence and the orchestrator subscribe to each shard's publisher, the orchestrator
boots and watches each, and a shard is its own program (name, symbols, bars, files)."""

from __future__ import annotations

import pytest
from harness import Home

from common import messages

SYMBOLS = ["EURUSD", "SYN01", "SYN02", "SYN03", "SYN04"]


@pytest.fixture
def cfg(tmp_path):
    home = Home(tmp_path, {"preditor": {"shards": 2}, "connector": {"symbols": dict.fromkeys(SYMBOLS, "H1")}})
    yield home.config()
    home.close()


def made(cls, cfg):
    svc = cls(cfg)
    try:
        return svc
    finally:
        svc.ctx.term()


def test_every_consumer_of_the_preditor_subscribes_to_each_shard(cfg):
    from services.executor.service import Executor
    from services.orchestrator.service import Orchestrator
    from services.paper.service import Paper
    from services.persistence.service import Persistence

    shards = {"preditor-0", "preditor-1"}
    ex, paper, pers, orch = (made(c, cfg) for c in (Executor, Paper, Persistence, Orchestrator))
    for svc in (ex, paper, pers, orch):
        assert shards <= set(svc.subscribe_to) and "preditor" not in svc.subscribe_to, svc.name
    assert ex.subscribe_to["preditor-1"] == ["signal.", "signals.", "hb.", "alert."]
    assert paper.subscribe_to["preditor-0"] == ["signal.", "signals.", "hb."]
    assert ex.preditors == paper.preditors == ("preditor-0", "preditor-1")
    assert set(orch.views) == {"persistence", "preditor-0", "preditor-1", "executor", "paper", "connector"}
    assert orch.plan.instruction("preditor-1", {}).reason == "preditor.load waits for persistence.open"
    assert set(cfg.publishers()) >= shards  # oracle tap and top


def test_a_shard_is_its_own_program(cfg):
    from services.preditor.service import Preditor

    shard = made(type("Preditor", (Preditor,), {"shard": 1}), cfg)
    assert shard.name == "preditor-1" and shard.symbols == {"SYN01", "SYN03"}
    assert shard.subscribe_to["connector"] == ["bar.SYN01.", "bars.SYN01.", "bar.SYN03.", "bars.SYN03."]
    assert shard.subscribe_to["orchestrator"] == [messages.SYS_STATE_TOPIC]
    assert shard.snapshot_dir == cfg.path(cfg.data_dir) / "preditor" / "preditor-1"
    assert cfg.endpoint(shard.name, "pub").endswith("/preditor-1.pub")
