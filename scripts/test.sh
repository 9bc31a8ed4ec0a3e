#!/usr/bin/env bash
# Run the test suite (bootstrap first), in two phases on two pytest-xdist workers (each test has its own temporary
# directory, ports, sockets and PostgreSQL database): the tests outside tests/system, then the system tests, a whole
# file to a worker (a module's tests share one boot of the system). Extra arguments go to both phases, e.g. -q or
# -m "not slow". Exit status: non-zero when either phase failed.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
# The dashboard's browser test (tests/system/test_supervisord.py) drives Debian's chromium with Playwright (the pip
# part is in pyproject.toml's dev extra; Playwright never downloads a browser of its own here). Only the tests need it:
# run.sh does not install it.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing Debian's chromium for the dashboard's browser test (apt-get, about a minute)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "test.sh: no /usr/bin/chromium: the dashboard's browser test is skipped until it is installed" \
         "(as root: apt-get install chromium); under CI=true it fails" >&2
  fi
fi
status=0
.venv/bin/python -m pytest tests --ignore=tests/system -n 2 "$@" || status=$?
.venv/bin/python -m pytest tests/system -n 2 --dist loadfile "$@" || { s=$?; [ "$s" -eq 5 ] || status=$s; }  # 5: none selected (-m "not slow")
exit "$status"
