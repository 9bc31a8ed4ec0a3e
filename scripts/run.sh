#!/usr/bin/env bash
# Run the whole system under supervisord (bootstrap first), then wait until it is RUNNING: exit 0 with its status, or
# non-zero with the reason as soon as it is known (an invalid configuration or a variable missing from the
# environment before anything starts; a program that cannot start, FAILED, or the system HALTED, once started).
set -euo pipefail
cd "$(dirname "$0")/.."
umask 077  # var/ (logs, the store, state files, spools) readable by this user only
./scripts/bootstrap.sh
if .venv/bin/supervisorctl -c deploy/supervisord.conf pid >/dev/null 2>&1; then
  echo "supervisord is already running for this checkout:"
else
  # the checks each program runs at its start (common/preflight.py), all at once, before anything starts
  if ! .venv/bin/oracle check-config >/dev/null; then
    echo "not started: fix the configuration or the environment above (.venv/bin/oracle check-config)" >&2
    exit 2
  fi
  .venv/bin/supervisord -c deploy/supervisord.conf
  echo "supervisord started (logs in var/log/); waiting for the system to reach RUNNING"
fi
if ! .venv/bin/oracle wait --timeout 60; then
  .venv/bin/oracle ctl status --timeout-ms 1000 || true
  echo "the system is not RUNNING (above: why); supervisord goes on: .venv/bin/oracle ctl stop, or fix and" \
       "restart the program (.venv/bin/supervisorctl -c deploy/supervisord.conf start PROGRAM)" >&2
  exit 1
fi
.venv/bin/oracle ctl status
cat <<'TXT'

Watch it:   .venv/bin/oracle tap            (every message, live; add prefixes: hb. sys. signal.)
Operate:    .venv/bin/oracle ctl status | stop
            .venv/bin/supervisorctl -c deploy/supervisord.conf status | restart executor
Stop:       .venv/bin/oracle ctl stop       (ordered shutdown, then supervisord exits)
TXT
