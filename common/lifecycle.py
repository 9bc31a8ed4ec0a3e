"""The lifecycle side of the service runtime (runtime.py): the handshake with the orchestrator (``hello`` ->
``wait`` or ``go STEP`` -> ``ready`` -> ... -> ``run``) and the steps it runs, with a helper thread keeping the
heartbeats going while a step runs (a warmup can take seconds) and reporting the step and how long it runs.

A mixin of ``runtime.Service``: it uses the service's orchestrator socket, state, steps and heartbeat.
"""

from __future__ import annotations

import logging
import threading
import time

from common import bus, logs, messages, wire

VERSION = "0.1.0"  # the runtime's version, in hello and status

log = logging.getLogger("oracle.runtime")


class StepFailed(RuntimeError):
    """A lifecycle step could not be done; the message says why (it reaches the operator)."""


class PermanentFailure(StepFailed):
    """A step that no restart can make work (a credential not in the environment, an invalid file of the
    configuration): the process reports it once and exits without being restarted (common/failure.py)."""


class Lifecycle:
    def _run_step(self, step: str, args: dict) -> messages.StepResult:
        """Run one step in the loop thread; a helper thread keeps heartbeats going while it runs."""
        logs.event(log, logging.INFO, "step start", step=step)
        prev = self.state
        self.state = messages.S_STEP
        t0 = time.monotonic()
        self._step = (step, t0)
        done = threading.Event()
        beat = threading.Thread(target=self._beat_during_step, args=(done,), name="step-heartbeat", daemon=True)
        beat.start()
        try:
            result = self.on_step(step, args) or {}
        except StepFailed as exc:
            logs.event(log, logging.ERROR, "step failed", step=step, error=str(exc),
                       permanent=isinstance(exc, PermanentFailure))
            if isinstance(exc, PermanentFailure):
                self._permanent = str(exc)
            return messages.StepResult(step, False, {}, str(exc))
        except Exception as exc:  # a bug in a step is a failed step, reported with its traceback in the log
            log.exception("step %s raised", step)
            return messages.StepResult(step, False, {}, f"{type(exc).__name__}: {exc}")
        finally:
            done.set()
            beat.join()
            self._step = None
            self.state = prev
        if step not in self.steps_done:
            self.steps_done.append(step)
        logs.event(log, logging.INFO, "step done", step=step, ms=round((time.monotonic() - t0) * 1000, 1))
        return messages.StepResult(step, True, result)

    def _beat_during_step(self, done: threading.Event) -> None:
        beats = 0
        while not done.wait(self.cfg.runtime.heartbeat_interval_s):
            beats += 1
            try:
                self._heartbeat(time.monotonic(), beats)
            except RuntimeError:  # the step changed a dict we were copying: skip this beat
                continue

    def _on_step_request(self, args: messages.StepArgs) -> messages.StepResult:
        return self._run_step(args.step, args.args)

    def _follow(self, instr: messages.Instruction) -> None:
        """Act on the orchestrator's answer to hello/ready."""
        assert self.orch is not None
        if instr.do == "go":
            res = self._run_step(instr.step, instr.args)
            ready = messages.Ready(self.name, self.epoch, res.step, res.ok, res.result, res.error)
            self.orch.send(messages.OP_READY.name, ready)
            if not res.ok:
                # Let it crash: supervisord restarts us, the orchestrator counts restarts and
                # escalates to HALTED; the reason already went out in the ready report. A permanent failure
                # (PermanentFailure) exits without a restart instead (runtime.Service.run).
                self._fatal = f"step {res.step} failed: {res.error}"
        elif instr.do == "run":
            if self.state != messages.S_RUNNING:
                logs.event(log, logging.INFO, "running", steps=",".join(self.steps_done))
            self.state = messages.S_RUNNING
            self._heartbeat(time.monotonic())  # tell the orchestrator now, not at the next beat
        else:
            self._next_hello = time.monotonic() + self.cfg.runtime.hello_interval_s

    def _drive_handshake(self, now: float) -> None:
        orch = self.orch
        if orch is None:
            return
        if orch.pending is not None:
            try:
                reply = orch.take_reply()
            except bus.RequestTimeout:
                if not self._orch_silent_logged:
                    log.warning("orchestrator not answering at %s; will keep asking", orch.endpoint)
                    self._orch_silent_logged = True
                self._next_hello = now + self.cfg.runtime.hello_interval_s
                return
            except wire.WireError as err:
                self.errors.record(err, "REQ orchestrator")
                orch.reset()
                return
            if reply is None:
                return
            self._orch_silent_logged = False
            if not reply.ok:
                log.error("orchestrator refused: %s %s", reply.error_code, reply.error_message)
                self._next_hello = now + 1.0
                return
            self._follow(reply.result)
            return
        if self.state != messages.S_RUNNING and now >= self._next_hello:
            hello = messages.Hello(self.name, self.pid, self.epoch, VERSION, list(self.steps_done))
            orch.send(messages.OP_HELLO.name, hello)

