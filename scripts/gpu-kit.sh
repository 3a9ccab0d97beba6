#!/usr/bin/env bash
# What scripts/gpu-check.sh needs on a GPU machine with no Rust toolchain (make gpu-kit): the
# `cuda` builds of the ponder CLI, the decode bench and the llama backend's real-model tests,
# stripped and compressed one by one (about 40 MB each: llama.cpp's CUDA kernels are in each),
# libgomp (which a machine may lack), and the model cut into parts of at most PART_MB MiB
# (default 48), for transfers that limit a file's size:
#
#   target/gpu-kit/{ponder,lm_llama,decode}.xz   xz -d them where they are
#   target/gpu-kit/lib/libgomp.so.1
#   target/gpu-kit/model.part-NN                 cat them, in order, into the model file;
#   target/gpu-kit/SHA256SUMS                    the model's checksum
#
# Builds into CUDA_TARGET_DIR (default target/cuda) as `make cuda` does; the first build
# compiles llama.cpp's CUDA kernels (over an hour on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

CUDA_TARGET_DIR=${CUDA_TARGET_DIR:-target/cuda}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
PART_MB=${PART_MB:-48}
KIT=target/gpu-kit

eval "$(bash scripts/cuda-toolkit.sh)"
export CARGO_TARGET_DIR=$CUDA_TARGET_DIR
cargo build --release --features cuda -p ponder-cli
# A test or bench executable's path, as cargo reports it: exe KIND NAME [FLAGS] (benches build
# with the release profile already; tests need --release to share the library's build).
exe() {
  cargo "$1" -p ponder "--$1" "$2" "${@:3}" --features cuda --no-run --message-format=json |
    python3 -c 'import json, sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("executable") and m["target"]["name"] == sys.argv[1]: print(m["executable"])' "$2"
}
tests=$(exe test lm_llama --release)
decode=$(exe bench decode)

rm -rf "$KIT"
mkdir -p "$KIT/lib"
cp "$CUDA_TARGET_DIR/release/ponder" "$KIT/ponder"
cp "$tests" "$KIT/lm_llama"
cp "$decode" "$KIT/decode"
for f in ponder lm_llama decode; do
  strip "$KIT/$f"
  xz -9 -T0 "$KIT/$f"
done
cp -L "$(gcc -print-file-name=libgomp.so.1)" "$KIT/lib/"

split -b "${PART_MB}M" -d "$MODEL" "$KIT/model.part-"
(cd "$(dirname "$MODEL")" && sha256sum "$(basename "$MODEL")") >"$KIT/SHA256SUMS"
ls -l "$KIT" >&2
