#!/usr/bin/env bash
# The GPU figures of docs/src/gpu.md, run on a machine with an NVIDIA GPU. That machine needs the
# NVIDIA driver and CUDA 13's cuBLAS (libcublas.so.13, libcublasLt.so.13, found on
# LD_LIBRARY_PATH or under /usr/local/cuda); it needs no Rust and no network: the binaries come
# from `make gpu-kit` (built with --features cuda on any machine) and the model is copied beside.
# Run from the repository root (data/ and scripts/ are read):
#
#   KIT=target/gpu-kit MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf bash scripts/gpu-check.sh
#
# Sections (SECTIONS, default "0 1 2 3 4 5"):
#   0  nvidia-smi and `ponder devices`: is the GPU seen;
#   1  aggregate decode rate, `ponder generate -n N --ignore-eos` (64-token prompt, 256 tokens
#      each) at 1/4/16/64 sequences in both KV layouts with every layer on the GPU, and the same
#      machine's CPU (--n-gpu-layers 0, every core) at 1 and 16 sequences for scale;
#   2  the real-model tests of the llama backend (tests/lm_llama.rs) with every layer on the GPU:
#      forks continue as a fresh prefill in both layouts, seeded sampling repeats, logprobs agree;
#   3  `cargo bench --bench decode`: ponder's engine against a plain llama-cpp-2 decode loop;
#   4  `ponder eval --workers 1/4/8`, best-of-4, both layouts, LIMIT problems (default 8;
#      bench-layouts.sh section 3);
#   5  MCTS and beam, which fork often, TREE_LIMIT problems (default 4; its section 4).
# Markdown on stdout (and in $OUT/report.md); raw output in OUT (default /tmp/ponder-gpu-check).
set -uo pipefail
cd "$(dirname "$0")/.."

KIT=$(cd "${KIT:-target/gpu-kit}" && pwd)
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
SECTIONS=${SECTIONS:-"0 1 2 3 4 5"}
OUT=${OUT:-/tmp/ponder-gpu-check}
LIMIT=${LIMIT:-8}           # problems for section 4
TREE_LIMIT=${TREE_LIMIT:-4} # problems for section 5
PONDER=$KIT/ponder
mkdir -p "$OUT"
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
report() { tee -a "$OUT/report.md"; }
: >"$OUT/report.md"

# cuBLAS 13: wherever the machine keeps it (the CUDA toolkit, or the nvidia-cublas wheel).
if ! ldconfig -p 2>/dev/null | grep -q libcublas.so.13; then
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
    $(find / -name 'libcublas.so.13' -printf '%h\n' 2>/dev/null | head -n 3); do
    [[ -e $d/libcublas.so.13 ]] && export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-} && break
  done
fi
# Libraries the kit carries (libgomp, when the machine has none).
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:$KIT/lib

rate() {
  python3 - "$1" <<'PY'
import json, sys
try:
    u = json.load(open(sys.argv[1]))["usage"]
    print(f"{u['generated_tokens'] / (u['wall_ms'] / 1000):.1f}")
except Exception:
    print("failed")
PY
}

{
  echo "# ponder gpu-check · $(date -u +%Y-%m-%dT%H:%MZ) · ${PONDER_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')} · model $MODEL"
  echo
  echo "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n 1) · CPU: $(nproc) cores"
  echo
} | report

if want 0; then
  { echo '```text'; "$PONDER" devices 2>&1; echo '```'; echo; } | report
fi

if want 1; then
  PROMPT_64="Write a long, detailed story about a lighthouse keeper who finds a message in a bottle on a stormy night, and what she does in the weeks that follow."
  gen() { # device layout n
    local ngl=999 threads=0
    [[ $1 == cpu ]] && ngl=0
    timeout 120 "$PONDER" generate --model "$MODEL" --n-gpu-layers $ngl --threads $threads \
      --kv-layout "$2" --ctx $(($3 * 512)) --n-seq-max "$3" -n "$3" --max-tokens 256 \
      --ignore-eos --temperature 0.8 --json --prompt "$PROMPT_64" \
      >"$OUT/gen-$1-$2-$3.json" 2>"$OUT/gen-$1-$2-$3.log"
    rate "$OUT/gen-$1-$2-$3.json"
  }
  {
    echo "## 1. Aggregate decode rate (generated tokens/s; one 64-token prompt, 256 tokens per sequence)"
    echo
    echo "| sequences | GPU unified | GPU streams | CPU streams ($(nproc) cores) |"
    echo "|---|---|---|---|"
  } | report
  for n in 1 4 16 64; do
    row="| $n | $(gen gpu unified $n) | $(gen gpu streams $n)"
    if [[ $n == 1 || $n == 16 ]]; then row="$row | $(gen cpu streams $n)"; else row="$row | —"; fi
    echo "$row |" | report
  done
  echo | report
fi

if want 2; then
  {
    echo "## 2. Real-model tests of the llama backend on the GPU (tests/lm_llama.rs)"
    echo
    echo '```text'
  } | report
  PONDER_MODEL=$MODEL timeout 300 "$KIT/lm_llama" --test-threads 1 >"$OUT/lm_llama.log" 2>&1
  echo "exit status $?" | report
  grep -E "^test |^test result|panicked|assert" "$OUT/lm_llama.log" | report
  { echo '```'; echo; } | report
fi

if want 3; then
  { echo "## 3. cargo bench --bench decode (engine against a plain llama-cpp-2 loop)"; echo; echo '```text'; } | report
  PONDER_MODEL=$MODEL timeout 300 "$KIT/decode" --bench >"$OUT/decode.log" 2>&1
  grep -E "^decode/|time:|thrpt:" "$OUT/decode.log" | report
  { echo '```'; echo; } | report
fi

# bench-layouts.sh's sections 3 and 4 with this binary (its eval and searches run on the GPU:
# every layer is offloaded by default in a cuda build).
layouts() { # its section, this script's section, problems
  PONDER=$PONDER MODEL=$MODEL LIMIT=$3 SECTIONS=$1 OUT=$OUT/layouts-$1 \
    timeout 600 bash scripts/bench-layouts.sh 2>"$OUT/layouts-$1.log" | tail -n +2 |
    sed "s/^## $1\./## $2./" | report
}
want 4 && layouts 3 4 "$LIMIT"
want 5 && layouts 4 5 "$TREE_LIMIT"
