"""Whether a hello is heard (services/orchestrator/admission.py): its pid, its epoch."""

import pytest

from common import messages
from services.orchestrator import admission

NOW = 1_800_000_000 * 10**9
S = 10**9


def hello(pid: int = 100, epoch: int = NOW - 3 * S) -> messages.Hello:
    return messages.Hello("paper", pid, epoch, "1")


@pytest.mark.parametrize(("h", "caller", "supervised", "started", "why"), [
    (hello(), 100, 100, NOW - 4 * S, ""),
    (hello(), 100, None, None, ""),  # no supervisord (started by hand): the caller's pid is the check
    (hello(), None, None, None, ""),  # another host (tcp + CURVE): the key was the check
    (hello(epoch=NOW + 4 * S), 100, 100, NOW - S, ""),  # within the clocks' skew
    (hello(epoch=2**62), 100, 100, NOW - S, "ahead of this host's clock"),
    (hello(epoch=2**62), None, None, None, "ahead of this host's clock"),
    (hello(pid=4242), 100, 4242, NOW - 4 * S, "says pid 4242 but was sent by pid 100"),
    (hello(), 100, 555, NOW - 4 * S, "supervisord runs as pid 555 for 'paper', not pid 100"),
    (hello(), 100, 0, NOW - 4 * S, "supervisord runs no process for 'paper'"),
    (hello(epoch=NOW - 60 * S), 100, 100, NOW - 4 * S, "before process 100 started"),
    (hello(epoch=NOW - 5 * S), 100, 100, NOW - 4 * S, ""),  # the start time's granularity
])
def test_a_hello_is_heard_when_its_pid_and_epoch_are_its_processs(h, caller, supervised, started, why):
    reason = admission.hello_refusal(h, NOW, caller, supervised, started)
    assert (why in reason and reason) if why else reason == ""
