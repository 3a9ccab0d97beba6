#!/usr/bin/env bash
# Builds llama.cpp's OpenAI-compatible `llama-server` for the remote-backend tests and benches,
# from the llama.cpp sources that the PyPI sdist of llama-cpp-python carries under
# vendor/llama.cpp (tools/server). Idempotent: does nothing when the binary is already built
# from the pinned sdist. Output: target/llama-server/bin/llama-server, and llama-batched-bench
# (llama.cpp's own aggregate decode rate, the reference of `make bench-concurrent`).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'build-server: %s\n' "$*" >&2; }

VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
OUT=target/llama-server
BIN=$OUT/bin/llama-server
STAMP=$OUT/built-from
# The build's identity: the sdist and the flags below (bump FLAGS_VERSION when they change).
FLAGS_VERSION=3

if [ -x "$BIN" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$SHA256-$FLAGS_VERSION" ]; then
  exit 0
fi

bash scripts/setup.sh >/dev/null  # cmake and a C/C++ compiler
command -v c++ >/dev/null 2>&1 || {
  log "installing g++"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends g++ >/dev/null
}

mkdir -p "$OUT"
sdist=$OUT/llama_cpp_python-$VERSION.tar.gz
if ! [ -f "$sdist" ] || [ "$(sha256sum "$sdist" | cut -d' ' -f1)" != "$SHA256" ]; then
  log "downloading the llama-cpp-python $VERSION sdist from PyPI (pip download)"
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" "llama-cpp-python==$VERSION"
  mv "$tmp"/llama_cpp_python-$VERSION.tar.gz "$sdist.part"
  rm -rf "$tmp"
  if [ "$(sha256sum "$sdist.part" | cut -d' ' -f1)" != "$SHA256" ]; then
    log "the sdist does not match sha256 $SHA256; refusing to build it"
    rm -f "$sdist.part"
    exit 1
  fi
  mv "$sdist.part" "$sdist"
fi

src=$OUT/src
rm -rf "$src"
mkdir -p "$src"
tar xzf "$sdist" -C "$src" --strip-components=3 "llama_cpp_python-$VERSION/vendor/llama.cpp"

log "building llama-server (a few minutes on 2 cores)"
# Built for this machine's CPU, but without ggml's AMX kernels: on AMX machines this llama.cpp
# version's AMX matrix multiply crashes (SIGSEGV in ggml_backend_amx_mul_mat) at the first
# decode. Explicit -mno-amx-* flags win over -march=native.
extra=""
if [ "$(uname -m)" = "x86_64" ]; then
  extra="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
fi
cmake -S "$src" -B "$OUT/build" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
  -DGGML_NATIVE=ON -DCMAKE_C_FLAGS="$extra" -DCMAKE_CXX_FLAGS="$extra" >"$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log" >&2; exit 1; }
cmake --build "$OUT/build" --target llama-server llama-batched-bench -j"$(nproc)" >"$OUT/build.log" 2>&1 \
  || { tail -40 "$OUT/build.log" >&2; exit 1; }
mkdir -p "$OUT/bin"
cp "$OUT/build/bin/llama-batched-bench" "$OUT/bin/llama-batched-bench"
cp "$OUT/build/bin/llama-server" "$BIN.new"
mv "$BIN.new" "$BIN"  # a rename, so that a server still running from the old file is unharmed
rm -rf "$src" "$OUT/build"
echo "$SHA256-$FLAGS_VERSION" > "$STAMP"
log "ready: $BIN"
