import pytest

from services.orchestrator import plan

ALL = {s.name for s in plan.BOOT}


def done_map(*steps: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for step in steps:
        out.setdefault(step.split(".")[0], set()).add(step)
    return out


@pytest.mark.parametrize(
    "service, done, expected",
    [
        ("persistence", done_map(), ("go", "persistence.open")),
        ("preditor", done_map(), ("wait", "")),
        ("preditor", done_map("persistence.open"), ("go", "preditor.load")),
        ("connector", done_map("persistence.open", "preditor.load", "executor.load"), ("wait", "")),
        (
            "connector",
            done_map("persistence.open", "preditor.load", "executor.load", "paper.load"),
            ("go", "connector.connect"),
        ),
        # preditor loaded but the sync is not done: its warmup waits
        (
            "preditor",
            done_map("persistence.open", "preditor.load", "executor.load", "paper.load", "connector.connect"),
            ("wait", ""),
        ),
        (
            "executor",
            done_map("persistence.open", "preditor.load", "executor.load", "paper.load", "connector.connect"),
            ("go", "executor.sync"),
        ),
        ("persistence", done_map(*(ALL - {"persistence.session", "paper.warmup"})), ("wait", "")),
        ("persistence", done_map(*(ALL - {"persistence.session"})), ("go", "persistence.session")),
        ("paper", done_map(*ALL), ("run", "")),
        # a restarted preditor (no steps) redoes load then warmup right away: its needs are still done
        ("preditor", done_map(*(ALL - {"preditor.load", "preditor.warmup"})), ("go", "preditor.load")),
        ("preditor", done_map(*(ALL - {"preditor.warmup"})), ("go", "preditor.warmup")),
    ],
)
def test_instruction(service, done, expected):
    instr = plan.instruction(service, done)
    assert (instr.do, instr.step) == expected


def test_wait_says_what_it_waits_for():
    assert plan.instruction("preditor", {}).reason == "preditor.load waits for persistence.open"


def test_stopping_answers_wait():
    assert plan.instruction("persistence", {}, halted_or_stopping=True).do == "wait"


def test_boot_order_is_the_seed_order():
    assert [s.name for s in plan.BOOT] == [
        "persistence.open",
        "preditor.load",
        "executor.load",
        "paper.load",
        "connector.connect",
        "executor.sync",
        "preditor.warmup",
        "paper.warmup",
        "persistence.session",
    ]


def test_tables_are_consistent():
    plan.check_tables()
    assert plan.all_done(done_map(*ALL))
    assert not plan.all_done(done_map(*(ALL - {"paper.warmup"})))


# ---- the preditor in shards: each its own step, the steps others need done by all of them ----------------------

SHARDED = plan.Plan(("persistence", "preditor-0", "preditor-1", "executor", "paper", "connector"))


def sharded_done(*steps: str, but: tuple[str, str] | None = None) -> dict[str, set[str]]:
    """Each step done by every program of its kind, but (program, step)."""
    out: dict[str, set[str]] = {}
    for step in steps:
        for program in SHARDED.of_kind(step.split(".")[0]):
            if (program, step) != but:
                out.setdefault(program, set()).add(step)
    return out


def test_each_shard_does_its_own_steps_and_a_need_waits_for_every_shard():
    assert SHARDED.instruction("preditor-0", {}).reason == "preditor.load waits for persistence.open"
    opened = sharded_done("persistence.open")
    assert [SHARDED.instruction(p, opened).step for p in ("preditor-0", "preditor-1")] == ["preditor.load"] * 2
    one_loaded = sharded_done("persistence.open", "preditor.load", but=("preditor-1", "preditor.load"))
    assert SHARDED.instruction("executor", one_loaded).reason == "executor.load waits for preditor.load (preditor-1)"
    assert SHARDED.instruction("executor", sharded_done("persistence.open", "preditor.load")).step == "executor.load"
    everything = sharded_done(*ALL)
    assert SHARDED.all_done(everything)
    # one shard restarted (a new process, no steps): the boot is not done until it warmed up again, and it goes
    # through its steps while the other runs on
    restarted = {**everything, "preditor-1": set()}
    assert not SHARDED.all_done(restarted)
    assert SHARDED.instruction("preditor-1", restarted).step == "preditor.load"
    assert SHARDED.instruction("preditor-0", restarted).do == "run"
    assert SHARDED.instruction("preditor-1", {**everything, "preditor-1": {"preditor.load"}}).step == "preditor.warmup"


def test_reactions_and_shutdown_apply_to_every_program_of_a_kind():
    assert SHARDED.reactions("connector") == [("executor", "executor.sync"), ("preditor-0", "preditor.warmup"),
                                              ("preditor-1", "preditor.warmup"), ("paper", "paper.warmup")]
    # a restarted shard: the executor takes the latest signals again, paper the ones it missed; the other shard
    # is left alone
    assert SHARDED.reactions("preditor-1") == [("executor", "executor.sync"), ("paper", "paper.warmup")]
    assert SHARDED.shutdown() == list(plan.SHUTDOWN)
    assert [s.name for s in SHARDED.steps_of("preditor-1")] == ["preditor.load", "preditor.warmup"]
    # one process per service: the module's tables as they were
    assert plan.DEFAULT.reactions("connector") == list(plan.REACT["connector"])


def test_supervisord_names_a_shard_by_its_group():
    from services.orchestrator.supervisor import namespec

    assert [namespec(p) for p in ("preditor", "preditor-1", "executor")] == [
        "preditor", "preditor:preditor-1", "executor"]
