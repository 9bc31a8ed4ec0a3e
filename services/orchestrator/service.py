"""The orchestrator process: readiness handshakes, heartbeat aggregation, watchdog, shutdown.

Thin by design: the decisions live in plan.py (what a service does next), watchdog.py (restart or
escalate) and health.py (issues); this shell feeds them heartbeats, hellos and supervisord's view,
and carries out what they decide. If it dies, trading goes on; when it comes back it rebuilds its
view from the heartbeats without disturbing anyone. Its operator commands (status, stop, clear_halt) are keyed
by common/commands.py, which validates their arguments before the handler runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import signal
import time
from collections import deque
from typing import Any

import psutil

from common import bus, commands, config, durable, failure, logs, messages, runtime, wire
from common.bus import OpError, Received
from common.outbox import record_id
from common.peer import Peer
from services.orchestrator import admission, health, plan, watchdog
from services.orchestrator.registry import ServiceView, durable_facts, restore_facts
from services.orchestrator.supervisor import Supervisors, SupervisorUnavailable

log = logging.getLogger("oracle.orchestrator")

# lifecycle events worth a durable record (watchdog restarts, halts, recoveries, failures), by severity
PERSISTED_EVENTS = {
    "restart": "WARNING",
    "respawn": "WARNING",
    "watchdog_restart": "WARNING",
    "halt": "CRITICAL",
    "failed": "CRITICAL",
    "clear_halt": "WARNING",
    "step_failed": "ERROR",
    "react": "INFO",
    "stopping": "INFO",
}


FLUSH_BEFORE_SHUTDOWN_S = 5.0  # at most this long, after the shutdown steps, for persistence to ack our events
# supervisord's view (pids, FATAL) is asked this often while something is not settled: booting, a service not RUNNING
# or not heard from within two heartbeat intervals, a restart under way, a stop; and this often when all is settled
# (an XML-RPC call costs both processes about a millisecond; a dead service is unsettled within two intervals, and
# its heartbeat timeout, not supervisord, is what the watchdog restarts it on)
SUPERVISOR_POLL_S = 1.0
SUPERVISOR_POLL_SETTLED_S = 10.0
STARVED_LOOK_S = 0.5  # a starved process (watchdog.starved) is looked at again this often
# with nothing under way (RUNNING, no step, request or record in flight) the loop sleeps until the next thing due (a
# heartbeat, the state, supervisord's view, a watchdog deadline), this long at most: what arrives wakes it anyway
QUIET_POLL_S = 0.5
# what outlives the orchestrator (restarts, the HALTED reason, the last alerts), under data_dir, written on change
STATE_FILE = "orchestrator-state.json"
KEPT_ALERTS = 20  # the last warning and critical alerts heard, in the status (ctl status, top)
ALERT_SEVERITIES = ("warning", "critical")
# the loads whose step takes the preditor's load result (the symbols it kept; a refused model's symbol is not one)
LIVE_MODELS_STEPS = ("executor.load", "paper.load")


def _iso(ts_ns: int) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_ns // 1_000_000_000))
    return f"{seconds}.{ts_ns // 1000 % 1_000_000:06d}Z"


class Orchestrator(runtime.Service):
    name = "orchestrator"
    status_record = messages.OrchestratorStatus
    handshake = False
    subscribe_to = {s: ["hb.", "alert."] for s in config.WORKERS}

    def __init__(self, cfg: config.Config, dry_run: bool = False):
        super().__init__(cfg, dry_run)
        plan.check_tables()
        self.workers = cfg.workers()  # every program it boots and watches: the preditor's shards each one
        self.plan = plan.Plan(self.workers)
        self.subscribe_to = {s: ["hb.", "alert."] for s in self.workers}
        self.views = {s: ServiceView(s) for s in self.workers}
        self.system = messages.BOOTING
        self.since_ts = time.time_ns()
        self.started_wall = time.time()  # a failure record younger than this is of a current start (no supervisord)
        self.halted_reason = ""
        self.stopping = False
        self.stop_reason = ""  # why the session ends: given to the shutdown steps (persistence ends the session)
        self.ever_running = False
        self.issues: list[str] = []
        self.boot_log: list[dict] = []  # go/ready/restart events with wall times, for status and tests
        # this host's supervisord and, in a layout over several hosts, each other host's through its agent
        self.supervisor = Supervisors.from_config(cfg, self.ctx, self.name)
        self.supervisor_error = ""
        self._starved_look: dict[str, float] = {}  # service -> when a starved process is looked at again
        self.own_supervisor_state = ""
        self._programs_problem = ""
        self._last_supervisor_poll: float | None = None
        self._next_supervisor_look = 0.0  # when to look again whether supervisord is due (settled or not)
        self._next_state_pub = 0.0
        self._last_event = "started"
        self.pushes: dict[str, deque[str]] = {s: deque() for s in self.workers}
        self.push_retry_at: dict[str, float] = {}
        self.requesters: dict[str, bus.Requester] = {}
        self.react_pending: set[str] = set()  # restarted services whose dependents must react
        self.shutdown_steps: deque[tuple[str, str]] = deque()  # run one after the other
        self._shutdown_sent = False
        self._flush_until: float | None = None  # during a stop: until when our last events may hold it
        self.alerts: deque[str] = deque(maxlen=KEPT_ALERTS)
        self.state_path = cfg.path(cfg.data_dir) / STATE_FILE
        self._supervisord = _parent_identity()  # the facts are this supervisord's (a new system starts afresh)
        self._saved_facts = ""
        self._restore_facts()

    # ---- what outlives the orchestrator ------------------------------------------------------
    def _restore_facts(self) -> None:
        try:
            raw = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("%s is unreadable (%s): restart counts and the HALTED reason start afresh", self.state_path,
                        exc)
            return
        if not isinstance(raw, dict) or raw.get("supervisord") != self._supervisord:
            return  # another run of the system: its counts and halt are not this one's
        try:
            self.halted_reason, alerts = restore_facts(raw, self.views, time.monotonic())
        except ValueError as exc:
            log.warning("%s: %s: restart counts and the HALTED reason start afresh", self.state_path, exc)
            return
        self.alerts.extend(alerts)
        logs.event(log, logging.INFO, "restored", halted_reason=self.halted_reason,
                   restarts={s: len(v.restarts) for s, v in self.views.items() if v.restarts})

    def _save_facts(self) -> None:
        """Written atomically when it changed (a restart, a halt, a clear, an alert): rare."""
        facts = durable_facts(self.views.values(), self.halted_reason, self.alerts)
        facts["supervisord"] = self._supervisord
        text = json.dumps(facts, sort_keys=True)
        if text == self._saved_facts:
            return
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            durable.write_atomic(self.state_path, text)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.state_path, exc)
            return
        self._saved_facts = text

    def alert(self, kind: str, severity: str, message: str, **details) -> None:
        super().alert(kind, severity, message, **details)
        self._keep_alert(messages.Alert(kind, severity, message, self.name, details), time.time_ns())

    def _keep_alert(self, alert: messages.Alert, ts_ns: int) -> None:
        if alert.severity in ALERT_SEVERITIES:
            clock = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts_ns / 1e9))
            self.alerts.append(f"{clock} {alert.severity} {alert.kind} ({alert.service}): {alert.message}")

    # ---- handshake ------------------------------------------------------------------------
    def ops(self) -> dict:
        operator = commands.serve(commands.ORCHESTRATOR, {  # keyed by the registry, arguments validated by it
            "status": self._status,
            "stop": self._on_stop_request,
            "clear_halt": self._on_clear_halt,
        })
        return {messages.OP_HELLO.name: self._on_hello, messages.OP_READY.name: self._on_ready, **operator}

    def _view(self, service: str) -> ServiceView:
        view = self.views.get(service)
        if view is None:
            raise OpError("unknown_service", f"'{service}' is not one of {', '.join(self.workers)}")
        return view

    def _record(self, event: str, **fields: Any) -> None:
        ts = time.time_ns()
        self.boot_log.append({"event": event, "ts": ts, **fields})
        del self.boot_log[:-500]
        severity = PERSISTED_EVENTS.get(event)
        if severity:
            service = str(fields.get("service", ""))
            message = " ".join(f"{k}={v}" for k, v in fields.items())
            self.persist(
                "events",
                {
                    "id": record_id("events", "orchestrator", ts, event, service),
                    "timestamp": _iso(ts),
                    "event_type": event.upper(),
                    "severity": severity,
                    "source": "orchestrator",
                    "message": f"{event} {message}".strip(),
                    "data": {k: v for k, v in fields.items() if isinstance(v, str | int | float | bool)},
                },
            )
        self._last_event = f"{event} " + " ".join(str(v) for v in fields.values())
        logs.event(log, logging.INFO, event, **fields)
        self._publish_state(time.monotonic())

    def _done(self) -> dict[str, set[str]]:
        return {s: v.steps for s, v in self.views.items()}

    def _adopt_process(self, view: ServiceView, epoch: int, pid: int, steps: list, now: float) -> None:
        replaced = view.new_epoch(epoch, pid, steps, now)
        self._record("restart" if replaced else "hello", service=view.name, pid=pid, epoch=epoch)
        if replaced:
            self.react_pending.add(view.name)  # its dependents react once it is back

    def _hello_refusal(self, h: messages.Hello, view: ServiceView, caller: Peer) -> str:
        """Why a hello is not heard (admission.py), with the facts of this host: the caller's pid (ipc), the pid
        supervisord runs the program as, the process's start. None of them over tcp (another host): the key."""
        if caller.pid is None:
            return admission.hello_refusal(h, time.time_ns(), None, None, None)
        reason = admission.hello_refusal(h, time.time_ns(), caller.pid, None, None)
        if reason or (h.epoch == view.epoch and h.pid == view.pid):
            return reason  # refused before asking supervisord anything; or the process already heard, asking again
        try:
            supervised = self.supervisor.pid_of(h.service)
        except SupervisorUnavailable:
            supervised = None  # no supervisord (services started by hand): the caller's pid is the check
        try:
            started = int(psutil.Process(h.pid).create_time() * 1e9)
        except psutil.Error:
            started = None
        return admission.hello_refusal(h, time.time_ns(), caller.pid, supervised, started)

    def _on_hello(self, h: messages.Hello) -> messages.Instruction:
        now = time.monotonic()
        view = self._view(h.service)
        reason = self._hello_refusal(h, view, self.rep.caller if self.rep is not None else Peer(None, ""))
        if reason:
            raise bus.Forbidden(f"hello for '{h.service}' refused: {reason}")
        if h.epoch != view.epoch:
            if h.epoch < view.epoch:
                raise OpError("stale_epoch", f"{h.service} epoch {h.epoch} is older than {view.epoch}")
            self._adopt_process(view, h.epoch, h.pid, h.steps, now)
        view.steps |= set(h.steps)
        view.version = h.version
        return self._instruct(view)

    def _on_ready(self, r: messages.Ready) -> messages.Instruction:
        view = self._view(r.service)
        caller = self.rep.caller if self.rep is not None else Peer(None, "")
        if caller.pid is not None and view.pid and caller.pid != view.pid:
            raise bus.Forbidden(f"ready for '{r.service}' from pid {caller.pid}, not its process {view.pid}")
        if r.epoch != view.epoch:
            raise OpError("stale_epoch", f"{r.service} epoch {r.epoch} is not the current {view.epoch}")
        if r.ok:
            view.steps.add(r.step)
            if r.step == "preditor.load":
                view.on_load_result(r.result)
            self._record("ready", service=r.service, step=r.step)
        else:
            self._record("step_failed", service=r.service, step=r.step, error=r.error)
            self.alert("step_failed", "critical", f"{r.service} failed {r.step}: {r.error}", step=r.step)
        return self._instruct(view)

    def _instruct(self, view: ServiceView) -> messages.Instruction:
        instr = self.plan.instruction(view.name, self._done(), self.stopping)
        if instr.do == "go" and instr.step in LIVE_MODELS_STEPS:
            live = self._live_models()
            if live is not None:
                instr = dataclasses.replace(instr, args={**instr.args, "live_models": live})
        if instr.do == "go":
            self._record("go", service=view.name, step=instr.step)
        return instr

    def _live_models(self) -> list[str] | None:
        """The symbols every preditor program's load kept (None while one of them is not known)."""
        programs = [self.views[p] for p in self.plan.of_kind("preditor")]
        if any(v.live_models is None for v in programs):
            return None
        return sorted({s for v in programs for s in v.live_models or ()})

    def _refused_models(self) -> list[str]:
        return [r for p in self.plan.of_kind("preditor") for r in self.views[p].refused_models]

    # ---- dependents react to a restart (rest_for_one) --------------------------------------
    def _react_when_ready(self) -> None:
        for service in list(self.react_pending):
            view = self.views[service]
            if not all(s.name in view.steps for s in self.plan.steps_of(service)):
                continue
            self.react_pending.discard(service)
            for dependent, step in self.plan.reactions(service):
                dep = self.views[dependent]
                if step in dep.steps:  # it did the step before: redo it (otherwise boot does it)
                    dep.steps.discard(step)
                    self.pushes[dependent].append(step)
                    self._record("react", service=dependent, step=step, because=service)

    def _requester(self, service: str) -> bus.Requester:
        req = self.requesters.get(service)
        if req is None:
            timeout_ms = int(self.cfg.orchestrator.step_timeout_s * 1000)
            req = bus.Requester(self.ctx, self.cfg.endpoint(service, "rep"), self.name, timeout_ms)
            self.requesters[service] = req
        return req

    def _drive_pushes(self, now: float) -> None:
        """Send queued steps (reactions and shutdown) to services over their REP sockets."""
        for service, queue in self.pushes.items():
            if not queue and service not in self.requesters:
                continue  # never asked anything: no socket yet
            req = self._requester(service)
            if req.pending is not None:
                try:
                    reply = req.take_reply()
                except (bus.RequestTimeout, wire.WireError) as exc:
                    if queue:
                        self._push_failed(service, queue.popleft(), str(exc), now)
                    continue
                if reply is None or not queue:
                    continue  # no answer yet, or the queue was cleared by a stop meanwhile
                step = queue.popleft()
                if reply.ok and reply.result.ok:
                    self.views[service].steps.add(step)
                    self._record("ready", service=service, step=step)
                else:
                    error = reply.error_message if not reply.ok else reply.result.error
                    self._push_failed(service, step, error, now)
                continue
            if not queue or now < self.push_retry_at.get(service, 0.0):
                continue
            if not self.views[service].alive(now, self.cfg.orchestrator.heartbeat_timeout_s):
                if self.stopping:  # a dead service cannot do its shutdown step: go on without it
                    self._record("step_skipped", service=service, step=queue.popleft(), why="no heartbeat")
                continue  # otherwise it is being restarted and will get the step when back
            self._record("go", service=service, step=queue[0])
            args = {"reason": self.stop_reason} if self.stopping else {}
            req.send(messages.OP_STEP.name, messages.StepArgs(queue[0], args))

    def _push_failed(self, service: str, step: str, error: str, now: float) -> None:
        self._record("step_failed", service=service, step=step, error=error)
        self.alert("step_failed", "warning", f"{service} failed {step}: {error}; retrying", step=step)
        if self.stopping:
            return  # shutdown goes on without it
        self.pushes[service].appendleft(step)
        self.push_retry_at[service] = now + 2.0

    # ---- heartbeats and the watchdog --------------------------------------------------------
    def on_message(self, received: Received) -> None:
        body = received.envelope.body
        if isinstance(body, messages.Alert):
            self._keep_alert(body, received.envelope.ts)
            return
        if not isinstance(body, messages.Heartbeat):
            return
        view = self.views.get(body.service)
        if view is None or received.envelope.src != body.service:
            return
        now = time.monotonic()
        if body.epoch != view.epoch:
            if body.epoch < view.epoch:
                return
            # A process we have not heard say hello: we restarted, or it did while we were away.
            self._adopt_process(view, body.epoch, body.pid, body.steps, now)
        view.on_heartbeat(body, now)
        if "models" in body.info:  # a preditor program's load result, again after we restarted
            view.on_load_result(body.info)

    def _settled(self, now: float) -> bool:
        """Everything RUNNING and heard from lately, supervisord agreeing, no restart under way: its view is asked
        less often (SUPERVISOR_POLL_SETTLED_S)."""
        if self.system != messages.RUNNING or self.stopping or self.supervisor_error or self.react_pending:
            return False
        recent = 2 * self.cfg.runtime.heartbeat_interval_s
        return all(v.alive(now, recent) and v.state == messages.S_RUNNING and v.supervisor_state == "RUNNING"
                   and v.restart_requested_at is None for v in self.views.values())

    def _poll_supervisor(self, now: float) -> None:
        if now < self._next_supervisor_look:
            return
        self._next_supervisor_look = now + SUPERVISOR_POLL_S
        last = self._last_supervisor_poll
        if last is not None and now - last < SUPERVISOR_POLL_SETTLED_S and self._settled(now):
            return
        self._last_supervisor_poll = now
        try:
            procs = self.supervisor.processes()
        except SupervisorUnavailable as exc:
            if self.supervisor_error != str(exc):
                log.warning("%s: restarts by the watchdog are unavailable", exc)
            self.supervisor_error = str(exc)
            self._see_failures_without_supervisord()
            return
        errors = "; ".join(self.supervisor.errors)  # a remote host that did not answer
        if errors and errors != self.supervisor_error:
            log.warning("%s: restarts on that host are unavailable", errors)
        self.supervisor_error = errors
        self.own_supervisor_state = procs.get(self.name, {}).get("statename", "")
        self._check_programs(procs)
        for name, info in procs.items():
            view = self.views.get(name)
            if view is None:
                continue
            view.supervisor_state = info.get("statename", "")
            self._see_failure(view, str(info.get("failure") or ""))
            if view.see_pid(int(info.get("pid") or 0), now):
                self._record("respawn", service=name, pid=info.get("pid"))

    def _see_failure(self, view: ServiceView, cause: str) -> None:
        """A program's permanent failure (common/failure.py), as supervisord's view carries it: said once (an event, a
        critical alert), shown until a start of it goes without one."""
        if cause == view.failure:
            return
        view.failure = cause
        if cause:
            self._record("failed", service=view.name, cause=cause)
            self.alert("failed", "critical", f"{view.name} cannot start: {cause}", cause=cause)

    def _see_failures_without_supervisord(self) -> None:
        """Services started by hand (no supervisord to date a start): a record is current when the process that wrote
        it is the one heard from, or when it is younger than this orchestrator."""
        folder = failure.directory(self.cfg)
        for name, view in self.views.items():
            if self.supervisor.host_of(name) != "local":
                continue
            found = failure.read(folder, name)
            current = found is not None and (found.pid == view.pid != 0 or found.ts >= self.started_wall)
            self._see_failure(view, found.cause if found is not None and current else "")

    def failed_reason(self) -> str:
        return "; ".join(f"{v.name}: {v.failure}" for v in self.views.values() if v.failure)

    def _check_programs(self, procs: dict[str, dict]) -> None:
        """supervisord runs the preditor programs of the configuration (numprocs = preditor.shards): said once."""
        problem = health.programs_problem("preditor", self.cfg.of_kind("preditor"), procs)
        if problem and problem != self._programs_problem:
            self.alert("programs", "critical", problem)
        self._programs_problem = problem

    def _watch(self, now: float) -> None:
        if self.stopping:
            return
        for action in watchdog.assess(self.views.values(), now, self.cfg.orchestrator):
            view = self.views[action.service]
            if isinstance(action, watchdog.Escalate):
                view.escalated = True
                self.halted_reason = f"{action.service}: {action.reason}"
                self._record("halt", service=action.service, reason=action.reason)
                self.alert("halted", "critical", f"system HALTED: {self.halted_reason}", service=action.service)
                try:
                    self.supervisor.stop(action.service)  # no endless restart storm
                except SupervisorUnavailable as exc:
                    log.warning("could not stop %s: %s", action.service, exc)
            else:
                if self._starved(view, now) or not self._still_running(view, now):
                    continue
                view.restart_requested_at = now
                view.restart_reason = action.reason
                self._record("watchdog_restart", service=action.service, reason=action.reason)
                self.alert("watchdog", "warning", f"restarting {action.service}: {action.reason}")
                try:
                    self.supervisor.kill(action.service)
                except SupervisorUnavailable as exc:
                    self.alert("watchdog", "critical", f"cannot restart {action.service}: {exc}")

    def _still_running(self, view: ServiceView, now: float) -> bool:
        """Is the process the watchdog judged the one supervisord runs now? Asked at the moment of the kill (its view
        of the processes is polled only every few seconds): a process started since is left alone, and so is none
        (exited, in back-off): what runs next gets the grace of a restart until its hello, its respawn noted."""
        try:
            pid = int(self.supervisor.processes().get(view.name, {}).get("pid") or 0)
        except SupervisorUnavailable as exc:
            self.alert("watchdog", "critical", f"cannot restart {view.name}: {exc}")
            return False
        if watchdog.same_process(view.pid, pid):
            return True
        logs.event(log, logging.INFO, "watchdog: the process judged is gone", service=view.name, judged=view.pid,
                   running=pid)
        view.restart_requested_at = now  # judged again after a restart's grace, not at every turn of the loop
        if view.see_pid(pid, now):
            self._record("respawn", service=view.name, pid=pid)
        return False

    def _starved(self, view: ServiceView, now: float) -> bool:
        """A silent process of this host that is runnable (its state R: waiting for a CPU) is starved, not hung:
        left alone for ``watchdog.STARVED_FACTOR`` heartbeat timeouts, looked at again every STARVED_LOOK_S."""
        if now < self._starved_look.get(view.name, 0.0):
            return True  # starved at the last look
        if self.supervisor.host_of(view.name) != "local":
            return False
        try:
            runnable = psutil.Process(view.pid).status() == psutil.STATUS_RUNNING
        except psutil.Error:
            return False
        silent = view.hb_age(now) or 0.0
        if not watchdog.starved(silent, self.cfg.orchestrator.heartbeat_timeout_s, runnable):
            return False
        if now - self._starved_look.get(view.name, 0.0) > STARVED_LOOK_S:  # a new spell: said once
            logs.event(log, logging.WARNING, "watchdog: silent but runnable (starved of CPU), not restarted yet",
                       service=view.name, pid=view.pid, silent_s=round(silent, 1))
        self._starved_look[view.name] = now + STARVED_LOOK_S
        return True

    # ---- system state -----------------------------------------------------------------------
    def _system_state(self, now: float, fresh_issues: bool = True) -> str:
        """The system's state; `fresh_issues=False` (the check of every loop turn) reuses the health issues found last
        (walking every symbol of every heartbeat), which every publish of the state (at least once a second) and
        every status finds again."""
        hb_timeout = self.cfg.orchestrator.heartbeat_timeout_s
        if fresh_issues:
            self.issues = health.issues(self.views.values(), now, self.cfg.health, hb_timeout)
        if self.stopping:
            return messages.STOPPING
        if self.halted_reason:  # before FAILED: the executor refuses openings while HALTED
            return messages.HALTED
        if any(v.failure for v in self.views.values()):
            return messages.FAILED
        pending = any(self.pushes.values()) or self.react_pending
        everyone_running = all(v.alive(now, hb_timeout) and v.state == messages.S_RUNNING for v in self.views.values())
        if self.plan.all_done(self._done()) and not pending and everyone_running:
            self.ever_running = True
            return messages.DEGRADED if self.issues else messages.RUNNING
        return messages.DEGRADED if self.ever_running else messages.BOOTING

    def _publish_state(self, now: float) -> None:
        if self.pub is None:
            return
        state = self._system_state(now)
        if state != self.system:
            logs.event(log, logging.INFO, "system state", state=state, was=self.system)
            self.system = state
            self.since_ts = time.time_ns()
        self._next_state_pub = now + self.cfg.orchestrator.status_interval_s
        body = messages.SysState(
            state=self.system,
            since_ts=self.since_ts,
            event=self._last_event,
            services={s: v.state for s, v in self.views.items()},
            issues=list(self.issues),
            halted_reason=self.halted_reason,
            failed_reason=self.failed_reason(),
        )
        self.publish(messages.SYS_STATE_TOPIC, body)

    def _quiet(self) -> bool:
        """Nothing under way that the loop must look after every turn (steps, requests, records, a stop)."""
        return (self.system == messages.RUNNING and not self.stopping and not self.react_pending
                and not len(self.outbox) and not any(self.pushes.values())
                and all(r.pending is None for r in self.requesters.values()))

    def poll_timeout_ms(self) -> int:
        base = super().poll_timeout_ms()
        if base < 100 or not self._quiet():
            return base
        now = time.monotonic()
        due = min(now + QUIET_POLL_S, self._next_state_pub, self._next_hb, self._next_supervisor_look)
        deadline = watchdog.next_check(self.views.values(), now, self.cfg.orchestrator)
        if deadline is not None:
            due = min(due, deadline + 0.001)  # the watchdog's timeouts are strict: just past
        return max(0, math.ceil((due - now) * 1000))

    def on_tick(self, now: float) -> None:
        self._save_facts()
        self._poll_supervisor(now)
        self._watch(now)
        self._react_when_ready()
        self._drive_pushes(now)
        if self.stopping and not any(self.pushes.values()):
            if self.shutdown_steps:
                service, step = self.shutdown_steps.popleft()
                self.pushes[service].append(step)
            else:
                if self._flush_until is None:
                    self._flush_until = now + FLUSH_BEFORE_SHUTDOWN_S
                if not len(self.outbox) or now >= self._flush_until:
                    self._finish_shutdown()
                # else: persistence is still up: let it acknowledge our last events before everything stops
        previous = self.system
        if now >= self._next_state_pub or self._system_state(now, fresh_issues=False) != previous:
            self._publish_state(now)

    # ---- operator requests -------------------------------------------------------------------
    def _on_stop_request(self, args: commands.Stop) -> messages.Stopping:
        if not self.stopping:
            self.stopping = True
            # in the shutdown steps' arguments, not only in sys.state's event: the step (REQ/REP) can reach
            # persistence before the sys.state message (PUB/SUB, another socket, no order between the two)
            self.stop_reason = "EMERGENCY" if self.halted_reason else args.reason
            for queue in self.pushes.values():
                queue.clear()
            self.shutdown_steps.extend(self.plan.shutdown())
            self._record("stopping", reason=args.reason)
        return messages.Stopping(messages.STOPPING, [f"{s}:{st}" for s, st in self.plan.shutdown()])

    def _finish_shutdown(self) -> None:
        """Every shutdown step answered: stop the processes (reverse order via supervisord)."""
        if self._shutdown_sent:
            return
        self._shutdown_sent = True
        self._record("shutdown")
        try:
            self.supervisor.shutdown()
            return
        except SupervisorUnavailable:
            pass
        for service in reversed(self.workers):  # no supervisord: terminate them ourselves (this host's only)
            if self.supervisor.host_of(service) != "local":
                continue
            pid = self.views[service].pid
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        self.request_stop()

    def _on_clear_halt(self, _args: commands.ClearHalt) -> messages.HaltCleared:
        was = self.halted_reason
        self.halted_reason = ""
        for v in self.views.values():
            if v.escalated:
                v.escalated = False
                v.restarts.clear()
                try:
                    self.supervisor.start(v.name)
                except SupervisorUnavailable as exc:
                    log.warning("could not start %s again: %s", v.name, exc)
        if was:
            self._record("clear_halt", was=was)
        return messages.HaltCleared(self._system_state(time.monotonic()), was)

    def status_report(self) -> dict[str, Any]:
        now = time.monotonic()
        services = {
            self.name: messages.ServiceSummary(
                state=self.state, pid=self.pid, epoch=self.epoch, uptime_s=round(self.uptime(), 3), hb_age_s=0.0,
                rss_bytes=self.rss(),
                restarts=None,  # a restarted orchestrator does not know its past lives; supervisord does
                steps=[], supervisor_state=self.own_supervisor_state, info={}, last_restart_reason="",
                wire_errors=self._wire_errors()),
        }
        hb_timeout = self.cfg.orchestrator.heartbeat_timeout_s
        for s, v in self.views.items():
            hb = v.hb
            age = v.hb_age(now)
            stopped = v.stopped(now, hb_timeout)  # the last pid seen is gone: not WAITING with it
            services[s] = messages.ServiceSummary(
                state="STOPPED" if stopped else v.state, pid=0 if stopped else v.pid, epoch=v.epoch,
                uptime_s=hb.uptime_s if hb else None,
                hb_age_s=round(age, 3) if age is not None else None, rss_bytes=hb.rss_bytes if hb else None,
                restarts=len(v.restarts), steps=sorted(v.steps), supervisor_state=v.supervisor_state,
                info=hb.info if hb else {}, last_restart_reason=v.restart_reason,
                wire_errors=hb.wire_errors if hb else {}, failure=v.failure or None,
                counted_pid=v.counted_pid)
        return {
            "system": self._system_state(now),
            "since_ts": self.since_ts,
            "halted_reason": self.halted_reason,
            "failed_reason": self.failed_reason(),
            "issues": list(self.issues),
            "supervisor": self.supervisor_error or "ok",
            "services": services,
            "boot_log": list(self.boot_log),
            "alerts": list(self.alerts),
            "refused_models": self._refused_models(),
        }

    def on_stop(self) -> None:
        for req in self.requesters.values():
            req.close()
        self.supervisor.close()


def _parent_identity() -> str:
    """The process that started this one (supervisord; a test's harness), by pid and start time: the durable facts
    belong to it, so a new run of the system does not inherit the last one's counts and halt."""
    ppid = os.getppid()
    try:
        started = psutil.Process(ppid).create_time()
    except psutil.Error:
        started = 0.0
    return f"{ppid}:{started:.2f}"


def main(argv: list[str] | None = None) -> int:
    return runtime.main(Orchestrator, argv)
