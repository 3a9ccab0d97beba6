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
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
  printf 'setup-openai: installing python3-venv\n' >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
python3 -m venv "$VENV"
"$PY" -m pip install --quiet --disable-pip-version-check "openai==$VERSION" >&2
echo "$PY"
