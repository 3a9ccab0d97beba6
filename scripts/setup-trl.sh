#!/usr/bin/env bash
# TRL and what it needs to read the GGUF models (transformers dequantises them through `gguf`), in a
# venv under target/ (ignored): the trainers that the export test (crates/ponder-cli/tests/trl.rs)
# and `make self-train` (scripts/self-train.sh) run on ponder synth's files. Idempotent: does nothing when the pinned
# versions are already there. Prints the venv's python on stdout.
#
# TRL 1.13.0 is the last release that ships the stepwise-supervision trainer (`PRMTrainer`, in
# trl.experimental.prm; 1.14 removed it); the other pins are the releases of the same weeks.
# torch from PyPI is the CUDA build (its nvidia-* wheels are most of the ~3.5 GB download); the
# trainers run on the CPU all the same. sentencepiece: llama.cpp's convert_hf_to_gguf.py imports it
# for every llama-architecture model (make self-train).
set -euo pipefail
cd "$(dirname "$0")/.."
PINS=(trl==1.13.0 transformers==5.17.0 datasets==5.0.1 accelerate==1.15.0 torch==2.14.0 gguf==0.19.0
  sentencepiece==0.2.2)
VENV=${PONDER_TRLENV:-target/trlenv}
PY=$VENV/bin/python
STAMP=$VENV/ponder-pins.txt
if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "${PINS[*]}" ]; then
  echo "$PY"
  exit 0
fi
printf 'setup-trl: installing %s into %s (about 3.5 GB of downloads, mostly torch)\n' "${PINS[*]}" "$VENV" >&2
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
  printf 'setup-trl: installing python3-venv\n' >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
rm -f "$STAMP"
python3 -m venv "$VENV"
"$PY" -m pip install --quiet --disable-pip-version-check --no-cache-dir "${PINS[@]}" >&2
# Written last, so that an interrupted install is retried rather than taken as done.
echo "${PINS[*]}" >"$STAMP"
echo "$PY"
