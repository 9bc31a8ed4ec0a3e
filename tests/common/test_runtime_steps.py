"""The lifecycle steps are dispatched by each service's declared table (runtime.Service.steps)."""

import pytest
from harness import Home

from common import messages, runtime
from services.connector.service import Connector
from services.executor.service import Executor
from services.orchestrator import plan
from services.paper.service import Paper
from services.persistence.service import Persistence
from services.preditor.service import Preditor


class Counting(runtime.Service):
    name = "paper"
    steps = {"paper.load": "_load", "paper.close": "_close"}

    def _load(self) -> dict:
        return {"loaded": True}

    def _close(self, args: dict) -> dict:
        return {"closed_with": args}


@pytest.fixture
def service(tmp_path):
    svc = Counting(Home(tmp_path).config())
    yield svc
    svc.ctx.term()


def test_a_step_runs_the_method_its_table_names(service):
    assert service.on_step("paper.load", {"ignored": 1}) == {"loaded": True}
    assert service.on_step("paper.close", {"reason": "end"}) == {"closed_with": {"reason": "end"}}


def test_an_unknown_step_fails_naming_the_known_ones(service):
    with pytest.raises(runtime.StepFailed, match=r"paper has no step 'paper\.warmup' \(its steps: paper\.load, "
                                                 r"paper\.close\)"):
        service.on_step("paper.warmup", {})


def test_a_table_naming_no_method_is_refused_when_the_class_is_made():
    with pytest.raises(TypeError, match="step 'x.go' names '_go', not a method of it"):
        type("Broken", (runtime.Service,), {"name": "x", "steps": {"x.go": "_go"}})


def test_a_step_method_takes_at_most_the_args():
    def two(self, args, more):
        return {}

    with pytest.raises(TypeError, match="takes more than the step's args"):
        type("Greedy", (runtime.Service,), {"name": "x", "steps": {"x.go": "_go"}, "_go": two})


@pytest.mark.parametrize("service_class", [Connector, Executor, Paper, Persistence, Preditor])
def test_each_service_declares_exactly_the_steps_the_orchestrator_sends_it(service_class):
    name = service_class.name
    sent = {s.name for s in plan.steps_of(name)} | {step for owner, step in plan.SHUTDOWN if owner == name}
    assert set(service_class.steps) == sent


def test_the_status_report_is_the_services_record_its_own_fields_beside_the_common_part(service):
    report = service._status(None)
    assert type(report) is messages.ProcessStatus and report.service == "paper" and report.sequence.gaps == 0
    partial = type("Partial", (Counting,), {"status_record": messages.PaperStatus,
                                            "status_report": lambda self: {"restored": True}})(service.cfg)
    try:
        with pytest.raises(TypeError, match="accounts"):  # a field the service forgot: refused when built
            partial._status(None)
    finally:
        partial.ctx.term()


class Misconfigured(runtime.Service):
    name = "paper"
    steps = {"paper.load": "_load", "paper.warmup": "_warmup"}

    def _load(self) -> dict:
        raise runtime.PermanentFailure("paper-state.jsonl line 3 is not a record; move it away to start fresh")

    def _warmup(self) -> dict:
        raise runtime.StepFailed("connector not answering")


def test_a_permanent_step_failure_is_kept_for_the_exit_a_transient_one_is_not(tmp_path):
    svc = Misconfigured(Home(tmp_path).config())
    try:
        transient = svc._run_step("paper.warmup", {})
        assert not transient.ok and svc._permanent == ""  # a crash: supervisord restarts it, the watchdog counts it
        permanent = svc._run_step("paper.load", {})
        assert not permanent.ok and permanent.error == svc._permanent  # reported in the ready, then exit 78
        assert "move it away" in svc._permanent
    finally:
        svc.ctx.term()
