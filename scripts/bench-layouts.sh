#!/usr/bin/env bash
# The two KV layouts side by side (make bench-layouts), with CLI runs on one quiet machine:
#   1. aggregate decode rate at 4, 8 and 16 sequences: `ponder generate -n N --ignore-eos`
#      (one 64-token prompt, 256 tokens each) in each layout, against llama.cpp's own
#      `llama-batched-bench` with a stream per sequence and with -kvu (one unified cache);
#   2. best-of-8 on one problem, a short prompt and an ~800-token 8-shot prompt:
#      `ponder generate -n 8` in each layout against `llama-server -np 8` answering one request
#      with `n: 8`, same prompt, same sampling (PROBLEMS problems of data/dev-wordproblems.jsonl,
#      run in turn): each sample to its end-of-sequence, and each exactly 256 tokens (end of
#      sequence ignored, the same work on both sides). The server is asked for ponder's order of
#      filters (top-k, temperature, top-p, min-p; its own default applies temperature last, which
#      keeps more tokens and so draws other, often shorter, samples) and caches no prompt across
#      requests (each request prefills its prompt, as each ponder run does);
#   3. `ponder eval --workers 1/4/8` over LIMIT problems, best-of-4 with majority vote;
#   4. MCTS and beam, which fork often, over LIMIT problems: wall time, stream copies and bytes.
# Prints Markdown tables; raw outputs stay in $OUT (default /tmp/ponder-bench-layouts).
# MODEL (default SmolLM2-135M) picks the model; SECTIONS (default "1 2 3 4") which parts run;
# PONDER the binary (default target/release/ponder; scripts/gpu-check.sh passes a `cuda` build).
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-${PONDER_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}}
LIMIT=${LIMIT:-8}
PROBLEMS=${PROBLEMS:-4}
SECTIONS=${SECTIONS:-"1 2 3 4"}
OUT=${OUT:-/tmp/ponder-bench-layouts}
BIN=target/llama-server/bin
PONDER=${PONDER:-target/release/ponder}
PORT=${PORT:-18192}
THREADS=${THREADS:-$(nproc)}
LAYOUTS=${LAYOUTS:-"unified streams"}
rm -rf "$OUT"
mkdir -p "$OUT"
want() { [[ " $SECTIONS " == *" $1 "* ]]; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# The rate of a `ponder generate --json` run: generated tokens over the model's wall time.
rate() {
  python3 - "$1" <<'PY'
import json, sys
u = json.load(open(sys.argv[1]))["usage"]
print(f"{u['generated_tokens'] / (u['wall_ms'] / 1000):.1f} {u['generated_tokens']} {u['wall_ms']} {u['kv_copies']}")
PY
}

echo "# ponder bench-layouts · $(date -u +%Y-%m-%dT%H:%MZ) · $(git rev-parse --short HEAD 2>/dev/null || echo "${PONDER_COMMIT:-?}") · $(nproc) cores · model $MODEL · $THREADS threads"
echo

if want 1; then
  PROMPT_64="Write a long, detailed story about a lighthouse keeper who finds a message in a bottle on a stormy night, and what she does in the weeks that follow."
  echo "## 1. Aggregate decode rate (one prompt, 256 tokens per sequence, end-of-sequence ignored)"
  echo
  echo "| sequences | ponder unified tok/s | ponder streams tok/s | llama-batched-bench -kvu | llama-batched-bench streams |"
  echo "|---|---|---|---|---|"
  for kvu in "-kvu" ""; do
    "$BIN/llama-batched-bench" -m "$MODEL" -c 8192 -b 2048 -ub 512 -t "$THREADS" -npp 64 -ntg 256 \
      -npl 4,8,16 $kvu --output-format jsonl >"$OUT/batched${kvu}.jsonl" 2>"$OUT/batched${kvu}.log"
  done
  for n in 4 8 16; do
    row="| $n"
    for layout in unified streams; do
      $PONDER generate --model "$MODEL" --threads "$THREADS" --kv-layout $layout --ctx 8192 \
        --n-seq-max 16 -n $n --max-tokens 256 --ignore-eos --temperature 0.8 --json \
        --prompt "$PROMPT_64" >"$OUT/gen-$layout-$n.json" 2>"$OUT/gen-$layout-$n.log"
      row="$row | $(rate "$OUT/gen-$layout-$n.json" | cut -d' ' -f1)"
    done
    for kvu in "-kvu" ""; do
      row="$row | $(python3 - "$OUT/batched${kvu}.jsonl" $n <<'PY'
import json, sys
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{") and json.loads(line)["pl"] == int(sys.argv[2]):
        print(f"{json.loads(line)['speed_tg']:.1f}")
PY
)"
    done
    echo "$row |"
  done
  echo
fi

if want 2; then
  # An 8-shot prompt of ~800 tokens: worked exemplars from data/arith40.jsonl.
  python3 - "$OUT" "$PROBLEMS" <<'PY'
import json, sys
out, k = sys.argv[1], int(sys.argv[2])
shots = [json.loads(l) for l in open("data/arith40.jsonl") if l.strip()][:8]
exemplars = "".join(
    f"Question: {s['question']}\nAnswer: Let us read the question carefully, write down every "
    f"quantity it gives, decide which operation combines them, and do the arithmetic one step "
    f"at a time, checking each step before going on. Doing so gives {s['answer']}. "
    f"The answer is {s['answer']}.\n\n" for s in shots)
problems = [json.loads(l) for l in open("data/dev-wordproblems.jsonl") if l.strip()][:k]
tail = ("\n\nSolve the problem step by step, then finish with the sentence \"The answer is\" "
        "followed by the final number.")
with open(f"{out}/prompts.jsonl", "w") as f:
    for p in problems:
        f.write(json.dumps({"kind": "short", "prompt": p["question"] + tail}) + "\n")
        f.write(json.dumps({"kind": "8-shot", "prompt": exemplars + "Question: " + p["question"] + tail}) + "\n")
PY
  # No prompt caching across requests (--no-cache-prompt, --cache-ram 0): each request
  # prefills its prompt once, as each `ponder generate` run does; with its defaults the server
  # would restore the 8-shot exemplars from the previous problem's request.
  "$BIN/llama-server" -m "$MODEL" --host 127.0.0.1 --port "$PORT" -c $((2048 * 8)) -np 8 \
    -t "$THREADS" --no-webui --no-cache-prompt --cache-ram 0 >"$OUT/server.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
    sleep 0.2
  done
  i=0
  while IFS= read -r line; do
    kind=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["kind"])' "$line")
    prompt=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["prompt"])' "$line")
    for mode in eos fixed; do
      flag=() label=$kind
      [[ $mode == fixed ]] && flag=(--ignore-eos) label=$kind-256
      for layout in $LAYOUTS; do
        $PONDER generate --model "$MODEL" --threads "$THREADS" --kv-layout $layout -n 8 \
          --max-tokens 256 --temperature 0.8 --top-k 40 --top-p 0.95 --min-p 0.05 --json \
          "${flag[@]}" --prompt "$prompt" >"$OUT/bon-$layout-$i-$mode.json" 2>"$OUT/bon-$layout-$i-$mode.log"
        echo "$label $layout $(rate "$OUT/bon-$layout-$i-$mode.json")" >>"$OUT/bon.txt"
      done
      python3 - "$PORT" "$prompt" "$label" "$mode" >>"$OUT/bon.txt" <<'PY'
import json, sys, time, urllib.request
port, prompt, label, mode = sys.argv[1:5]
body = {"messages": [{"role": "user", "content": prompt}], "n": 8, "max_tokens": 256,
        "temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05,
        "samplers": ["top_k", "temperature", "top_p", "min_p"], "ignore_eos": mode == "fixed",
        "cache_prompt": False}
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions",
                             json.dumps(body).encode(), {"Content-Type": "application/json"})
start = time.time()
with urllib.request.urlopen(req, timeout=3600) as r:
    choices = json.load(r)["choices"]
wall = time.time() - start
# The server's usage counts one choice's tokens only: count each choice's own.
def count(text):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/tokenize",
                                 json.dumps({"content": text}).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return len(json.load(r)["tokens"])
if mode == "fixed":
    tokens = 256 * len(choices)
else:
    tokens = sum(count(c["message"]["content"]) + (c["finish_reason"] == "stop") for c in choices)
print(f"{label} server {tokens / wall:.1f} {tokens} {wall * 1000:.0f} 0")
PY
    done
    i=$((i + 1))
  done <"$OUT/prompts.jsonl"
  cleanup
  pids=()
  echo "## 2. Best-of-8 on one problem ($PROBLEMS problems each; generated tokens per second of the request's wall time)"
  echo
  python3 - "$OUT/bon.txt" <<'PY'
import sys, collections
tok, ms = collections.Counter(), collections.Counter()
for line in open(sys.argv[1]):
    kind, who, _, t, w, _ = line.split()
    tok[kind, who] += int(t); ms[kind, who] += float(w)
whos = [w for w in ["unified", "streams", "server"] if any(k[1] == w for k in tok)]
print("| prompt | " + " | ".join(f"{'llama-server -np 8, n: 8' if w == 'server' else 'ponder ' + w} tok/s" for w in whos) + " |")
print("|---|" + "---|" * len(whos))
names = {"short": "short, to end of sequence", "8-shot": "8-shot, to end of sequence",
         "short-256": "short, 256 tokens each", "8-shot-256": "8-shot, 256 tokens each"}
for kind, name in names.items():
    if any(k[0] == kind for k in tok):
        print(f"| {name} | " + " | ".join(f"{tok[kind, w] / (ms[kind, w] / 1000):.1f}" for w in whos) + " |")
PY
  echo
fi

if want 3; then
  echo "## 3. ponder eval, best-of-4 vote, 256 tokens, $LIMIT problems of data/arith40.jsonl"
  echo
  echo "| layout | workers | wall s | generated tokens | tokens/s | forward passes | stream copies | accuracy |"
  echo "|---|---|---|---|---|---|---|---|"
  for layout in $LAYOUTS; do
    for w in 1 4 8; do
      $PONDER eval --model "$MODEL" --threads "$THREADS" --kv-layout $layout --dataset data/arith40.jsonl \
        --limit "$LIMIT" --strategy best-of-n --n 4 --max-tokens 256 --rerank vote --workers "$w" \
        --json >"$OUT/eval-$layout-$w.json" 2>"$OUT/eval-$layout-$w.log"
      python3 - "$OUT/eval-$layout-$w.json" "$layout" "$w" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
u, s = r["usage"], r["wall_ms"] / 1000
print(f"| {sys.argv[2]} | {sys.argv[3]} | {s:.1f} | {u['generated_tokens']} | "
      f"{u['generated_tokens'] / s:.1f} | {u['forward_passes']} | {u.get('kv_copies', 0)} | {r['accuracy']:.3f} |")
PY
    done
  done
  echo
fi

if want 4; then
  echo "## 4. Searches that fork often, $LIMIT problems of data/arith40.jsonl, one at a time"
  echo
  echo "| strategy | layout | wall s | generated tokens | forward passes | parked | stream copies | MB copied | accuracy |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for strategy in mcts beam; do
    for layout in $LAYOUTS; do
      $PONDER eval --model "$MODEL" --threads "$THREADS" --kv-layout $layout --dataset data/arith40.jsonl \
        --limit "$LIMIT" --strategy $strategy --budget 1024 --max-tokens 64 --json \
        >"$OUT/$strategy-$layout.json" 2>"$OUT/$strategy-$layout.log"
      python3 - "$OUT/$strategy-$layout.json" "$strategy" "$layout" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
u, s = r["usage"], r["wall_ms"] / 1000
print(f"| {sys.argv[2]} | {sys.argv[3]} | {s:.1f} | {u['generated_tokens']} | {u['forward_passes']} | "
      f"{u['parked']} | {u.get('kv_copies', 0)} | {u.get('kv_copy_bytes', 0) / 1e6:.0f} | {r['accuracy']:.3f} |")
PY
    done
  done
  echo
fi
