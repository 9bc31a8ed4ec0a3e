#!/usr/bin/env bash
# Create .venv if missing and install the project into it (again whenever pyproject.toml or the C loops change).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml common/twin/_filter.c | sha256sum | cut -c1-16)"  # the C loops are built at install
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing the project and its pinned dependencies into .venv (about 1-2 minutes the first time)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev,train]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# The dashboard's browser test (tests/system/test_supervisord.py) drives Debian's chromium with Playwright (the pip
# part is in the dev extra above; Playwright never downloads a browser of its own here).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing Debian's chromium for the dashboard's browser test (apt-get, about a minute)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "bootstrap: no /usr/bin/chromium: the dashboard's browser test is skipped until it is installed" \
         "(as root: apt-get install chromium)" >&2
  fi
fi
