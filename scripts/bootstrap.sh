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
