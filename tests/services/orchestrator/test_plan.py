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
