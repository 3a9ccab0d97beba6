#!/usr/bin/env bash
# The `openai` Python client for `ponder serve`'s tests and `make bench-serve`, in a venv under
# target/ (ignored). Idempotent: does nothing when the pinned version is already there.
# Prints the venv's python on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.109.1
VENV=${PONDER_PYENV:-target/pyenv}
PY=$VENV/bin/python
if [ -x "$PY" ] && "$PY" -c "import openai, sys; sys.exit(openai.__version__ != '$VERSION')" 2>/dev/null; then
  echo "$PY"
  exit 0
fi
printf 'setup-openai: installing openai==%s into %s\n' "$VERSION" "$VENV" >&2
python3 -m venv "$VENV"
"$PY" -m pip install --quiet --disable-pip-version-check "openai==$VERSION" >&2
echo "$PY"
