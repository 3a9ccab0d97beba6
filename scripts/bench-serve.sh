#!/usr/bin/env bash
# `ponder serve` under load (make bench-serve): CLIENTS (default 8) concurrent openai clients
# work through LIMIT (default 10) problems of data/arith40.jsonl with MODEL_NAME (default
# bon-smol: best-of-8 reranked by the self-judge). THREADS (default 1) llama.cpp threads.
# Prints one JSON line (requests/min, p50/p95 latency, accuracy, tokens); the server's log and
# /metrics are left in $OUT (default /tmp/ponder-bench-serve).
set -euo pipefail
cd "$(dirname "$0")/.."

LIMIT=${LIMIT:-10}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-1}
MODEL_NAME=${MODEL_NAME:-bon-smol}
PONDER_JSON=${PONDER_JSON:-}
MODEL=${PONDER_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
PORT=${PORT:-18190}
OUT=${OUT:-/tmp/ponder-bench-serve}
mkdir -p "$OUT"
PY=$(bash scripts/setup-openai.sh)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

target/release/ponder serve --model "$MODEL" --threads "$THREADS" --port "$PORT" \
  --model-name smol --max-queue $((CLIENTS * 2)) --max-solve-seconds "${MAX_SOLVE_SECONDS:-3600}" >"$OUT/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.2
done
args=("http://127.0.0.1:$PORT" "$MODEL_NAME" data/arith40.jsonl --limit "$LIMIT" --clients "$CLIENTS")
[ -n "$PONDER_JSON" ] && args+=(--ponder "$PONDER_JSON")
"$PY" scripts/bench-serve.py "${args[@]}"
curl -fs "http://127.0.0.1:$PORT/metrics" >"$OUT/metrics.txt"
