#!/usr/bin/env bash
# The remote backend's speed, measured with CLI runs (make bench-remote):
#   1. the same strategy in-process and through one local llama-server: wall time per solve,
#      prompt tokens sent, processed and taken from the server's prefix cache;
#   2. synth throughput through one server and through two servers on this machine, with one
#      worker and with WORKERS (default 4) problems in flight.
# SKIP_EVAL=1 runs part 2 only.
# Prints a Markdown table; the raw JSON of every run is left in $OUT (default /tmp/ponder-bench-remote).
set -euo pipefail
cd "$(dirname "$0")/.."

LIMIT=${LIMIT:-5}
SYNTH_LIMIT=${SYNTH_LIMIT:-8}
WORKERS=${WORKERS:-4}
OUT=${OUT:-/tmp/ponder-bench-remote}
MODEL=${PONDER_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
SERVER=${PONDER_LLAMA_SERVER:-target/llama-server/bin/llama-server}
PONDER=target/release/ponder
rm -rf "$OUT"
mkdir -p "$OUT"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_server() { # PORT SLOTS THREADS
  "$SERVER" -m "$MODEL" --host 127.0.0.1 --port "$1" -c $((4096 * $2)) -np "$2" -t "$3" \
    --no-webui >"$OUT/server-$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "server on port $1 did not start; see $OUT/server-$1.log" >&2
  exit 1
}

P1=${P1:-18181}
P2=${P2:-18182}
CORES=$(nproc)
start_server "$P1" 4 "$CORES"

row() { # NAME FILE
  python3 - "$1" "$2" "$LIMIT" <<'PY'
import json, sys
name, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = json.load(open(path))
u = r["usage"]
sent = u["prefill_tokens"] + u["reused_tokens"]
print(f"| {name} | {r['wall_ms'] / 1000 / n:.1f} | {u['generated_tokens'] / n:.0f} | "
      f"{sent / n:.0f} | {u['prefill_tokens'] / n:.0f} | {u['reused_tokens'] / n:.0f} | {r['accuracy']:.2f} |")
PY
}

if [[ -z ${SKIP_EVAL:-} ]]; then
echo "| strategy · backend | s/problem | generated tokens/problem | prompt tokens sent/problem | processed | from cache | accuracy |"
echo "|---|---|---|---|---|---|---|"
for s in "best-of-n --n 4 --max-tokens 128" "mcts --budget 384 --max-tokens 64"; do
  name=${s%% *}
  # shellcheck disable=SC2086
  $PONDER eval --dataset data/arith40.jsonl --limit "$LIMIT" --strategy $s --json >"$OUT/$name-llama.json"
  row "$name · in-process" "$OUT/$name-llama.json"
  # shellcheck disable=SC2086
  $PONDER eval --backend remote --url "http://127.0.0.1:$P1" --dataset data/arith40.jsonl \
    --limit "$LIMIT" --strategy $s --json >"$OUT/$name-remote.json"
  row "$name · llama-server" "$OUT/$name-remote.json"
done
fi

echo
echo "| synth (best-of-n, n 4, $SYNTH_LIMIT problems) | workers | wall s | problems/min | generated tokens/s |"
echo "|---|---|---|---|---|"
synth_row() { # NAME WORKERS URLS...
  local name=$1 workers=$2
  shift 2
  local args=()
  for u in "$@"; do args+=(--url "$u"); done
  local dir="$OUT/synth-${name// /_}-$workers"
  rm -rf "$dir"
  $PONDER synth --backend remote "${args[@]}" --workers "$workers" --input data/arith40.jsonl \
    --limit "$SYNTH_LIMIT" --output "$dir" --strategy best-of-n --n 4 --max-tokens 128 \
    --formats sft,preference --oracle --json >"$dir.json"
  python3 - "$name" "$workers" "$dir.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[3]))
w = s["wall_ms"] / 1000
print(f"| {sys.argv[1]} | {sys.argv[2]} | {w:.1f} | {s['problems'] / w * 60:.1f} | {s['generated_tokens'] / w:.1f} |")
PY
}
synth_row "one server, $CORES threads" 1 "http://127.0.0.1:$P1"
synth_row "one server, $CORES threads" "$WORKERS" "http://127.0.0.1:$P1"
# Two servers share this machine's cores: half the threads each (more threads than cores make
# ggml's spinning workers fight over them).
cleanup
pids=()
sleep 1
start_server "$P1" 4 $(((CORES + 1) / 2))
start_server "$P2" 4 $(((CORES + 1) / 2))
for w in 1 "$WORKERS"; do
  synth_row "two servers, $(((CORES + 1) / 2)) threads each" "$w" "http://127.0.0.1:$P1" "http://127.0.0.1:$P2"
done
