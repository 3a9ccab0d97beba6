#!/usr/bin/env bash
# `ponder serve` under load (make bench-serve): CLIENTS (default 8) concurrent openai clients
# work through LIMIT (default 10) problems of data/arith40.jsonl with MODEL_NAME (default
# bon-smol: best-of-8 reranked by the self-judge). THREADS (default 1) llama.cpp threads.
# Prints one JSON line (requests/min, p50/p95 latency, accuracy, tokens); the server's log and
# /metrics are left in $OUT (default /tmp/ponder-bench-serve).
# Then (OPTILLM=1, the default) the same problems through optillm's `bon` approach (optillm 0.4.0,
# installed with --no-deps: see scripts/bench-optillm.py) in front of `llama-server -np CLIENTS`,
# best-of-8 with the same 384-token limit: a second JSON line.
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

# The same context as the llama-server below gets: 4096 cells per client.
target/release/ponder serve --model "$MODEL" --threads "$THREADS" --port "$PORT" \
  --ctx $((4096 * CLIENTS)) --model-name smol --max-queue $((CLIENTS * 2)) --max-solve-seconds "${MAX_SOLVE_SECONDS:-3600}" >"$OUT/server.log" 2>&1 &
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
kill $pid 2>/dev/null || true
wait $pid 2>/dev/null || true

[ "${OPTILLM:-1}" = 1 ] || exit 0
"$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('optillm') is None)" 2>/dev/null ||
  "$PY" -m pip install --quiet --disable-pip-version-check --no-deps optillm==0.4.0 >&2
target/llama-server/bin/llama-server -m "$MODEL" --host 127.0.0.1 --port "$PORT" -np "$CLIENTS" \
  -c $((4096 * CLIENTS)) -t "$THREADS" --no-webui >"$OUT/llama-server.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.2
done
"$PY" scripts/bench-optillm.py "http://127.0.0.1:$PORT" data/arith40.jsonl --limit "$LIMIT" \
  --clients "$CLIENTS" --n 8 --max-tokens "${OPTILLM_MAX_TOKENS:-384}"
