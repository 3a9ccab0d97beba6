#!/usr/bin/env bash
# Many solves on one context (make bench-concurrent), measured with CLI runs:
#   1. `ponder eval` over LIMIT problems of data/arith40.jsonl, best-of-8 with majority vote,
#      256 tokens, with --workers 1, 2, 4, 8 (WORKERS_LIST): wall time, generated tokens/s,
#      forward passes and sampled tokens per pass;
#   2. MCTS (budget 384) over the same problems with --workers 1, 4, 8 (MCTS_WORKERS_LIST);
#   3. the same best-of-8 samples (LIMIT × 8) sent to `llama-server -np 8` as independent chat requests by
#      8 concurrent clients, same sampling settings and token limit;
#   4. llama.cpp's own `llama-batched-bench` on the same model: its aggregate decode rate for
#      8 and 16 sequences (the ceiling of this machine's kernels).
# Prints Markdown tables; raw outputs stay in $OUT (default /tmp/ponder-bench-concurrent).
set -euo pipefail
cd "$(dirname "$0")/.."

LIMIT=${LIMIT:-40}
WORKERS_LIST=${WORKERS_LIST-"1 2 4 8"}
MCTS_WORKERS_LIST=${MCTS_WORKERS_LIST-"1 4 8"}
OUT=${OUT:-/tmp/ponder-bench-concurrent}
MODEL=${PONDER_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
BIN=target/llama-server/bin
PONDER=target/release/ponder
PORT=${PORT:-18191}
THREADS=${THREADS:-$(nproc)}
rm -rf "$OUT"
mkdir -p "$OUT"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

echo "| ponder eval, best-of-8 vote, $LIMIT problems | workers | wall s | generated tokens | tokens/s | forward passes | sampled tokens/pass | accuracy |"
echo "|---|---|---|---|---|---|---|---|"
for w in $WORKERS_LIST; do
  $PONDER eval --model "$MODEL" --threads "$THREADS" --dataset data/arith40.jsonl --limit "$LIMIT" \
    --strategy best-of-n --n 8 --max-tokens 256 --rerank vote --workers "$w" --json \
    >"$OUT/eval-$w.json" 2>"$OUT/eval-$w.log"
  python3 - "$OUT/eval-$w.json" "$w" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
u, s = r["usage"], r["wall_ms"] / 1000
print(f"| in-process | {sys.argv[2]} | {s:.1f} | {u['generated_tokens']} | "
      f"{u['generated_tokens'] / s:.1f} | {u['forward_passes']} | "
      f"{u['decoded_tokens'] / max(u['forward_passes'], 1):.1f} | {r['accuracy']:.3f} |")
PY
done

echo
echo "| ponder eval, MCTS (budget 384, steps of 64), $LIMIT problems | workers | wall s | problems/min | forward passes | sampled tokens/pass | accuracy |"
echo "|---|---|---|---|---|---|---|"
for w in $MCTS_WORKERS_LIST; do
  $PONDER eval --model "$MODEL" --threads "$THREADS" --dataset data/arith40.jsonl --limit "$LIMIT" \
    --strategy mcts --budget 384 --max-tokens 64 --workers "$w" --json \
    >"$OUT/mcts-$w.json" 2>"$OUT/mcts-$w.log"
  python3 - "$OUT/mcts-$w.json" "$w" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
u, s = r["usage"], r["wall_ms"] / 1000
print(f"| in-process | {sys.argv[2]} | {s:.1f} | {r['problems'] * 60 / s:.1f} | {u['forward_passes']} | "
      f"{u['decoded_tokens'] / max(u['forward_passes'], 1):.1f} | {r['accuracy']:.3f} |")
PY
done

"$BIN/llama-server" -m "$MODEL" --host 127.0.0.1 --port "$PORT" -c $((4096 * 8)) -np 8 \
  -t "$THREADS" --no-webui >"$OUT/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do
  curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.2
done
python3 - "$PORT" "$LIMIT" <<'PY'
import json, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
port, limit = sys.argv[1], int(sys.argv[2])
# The prompt best-of-N sends (StrategyConfig's default prompt template).
template = ('{question}\n\nSolve the problem step by step, then finish with the sentence '
            '"The answer is" followed by the final number.')
problems = [json.loads(l) for l in open("data/arith40.jsonl") if l.strip()][:limit]
jobs = [(p, k) for p in problems for k in range(8)]
def ask(job):
    p, k = job
    body = {"messages": [{"role": "user", "content": template.format(question=p["question"])}],
            "max_tokens": 256, "temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
            "seed": k}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions",
                                 json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=3600) as r:
        return json.load(r)["usage"]
start = time.time()
with ThreadPoolExecutor(8) as pool:
    usages = list(pool.map(ask, jobs))
wall = time.time() - start
gen = sum(u["completion_tokens"] for u in usages)
print()
print(f"| llama-server -np 8, {len(jobs)} independent requests, 8 clients | wall s | generated tokens | tokens/s |")
print("|---|---|---|---|")
print(f"| server | {wall:.1f} | {gen} | {gen / wall:.1f} |")
PY
cleanup
pids=()

echo
echo "| llama-batched-bench (prompt 64, 256 generated) | sequences | decode tokens/s |"
echo "|---|---|---|"
"$BIN/llama-batched-bench" -m "$MODEL" -c 8192 -b 2048 -ub 512 -t "$THREADS" -npp 64 -ntg 256 \
  -npl 1,4,8,16 --output-format jsonl >"$OUT/batched-bench.jsonl" 2>"$OUT/batched-bench.log"
python3 - "$OUT/batched-bench.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    print(f"| llama.cpp | {r['pl']} | {r['speed_tg']:.1f} |")
PY
