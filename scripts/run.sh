#!/usr/bin/env bash
# Run the whole system under supervisord (bootstrap first), then wait until it is RUNNING.
set -euo pipefail
cd "$(dirname "$0")/.."
umask 077  # var/ (logs, the store, state files, spools) readable by this user only
./scripts/bootstrap.sh
if .venv/bin/supervisorctl -c deploy/supervisord.conf pid >/dev/null 2>&1; then
  echo "supervisord is already running for this checkout:"
else
  .venv/bin/supervisord -c deploy/supervisord.conf
  echo "supervisord started (logs in var/log/); waiting for the system to reach RUNNING"
fi
for _ in $(seq 1 60); do
  if .venv/bin/oracle ctl status --json 2>/dev/null | grep -q '"system": "RUNNING"'; then break; fi
  sleep 0.5
done
.venv/bin/oracle ctl status
cat <<'TXT'

Watch it:   .venv/bin/oracle tap            (every message, live; add prefixes: hb. sys. signal.)
Operate:    .venv/bin/oracle ctl status | stop
            .venv/bin/supervisorctl -c deploy/supervisord.conf status | restart executor
Stop:       .venv/bin/oracle ctl stop       (ordered shutdown, then supervisord exits)
TXT
