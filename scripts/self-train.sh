#!/usr/bin/env bash
# One round of the self-improvement loop on the default model (make self-train), each stage timed:
#
#   eval before   greedy accuracy on EVAL (data/dev-wordproblems.jsonl: 60 problems) of MODEL, and of
#                 MODEL passed untrained through the same conversion (the control)
#   synth         best-of-N over TRAIN (data/arith40.jsonl: other problems, another generator), the
#                 right answers kept by the reference (--oracle) -> sft.jsonl
#   train         TRL's SFTTrainer, STEPS steps on the CPU (scripts/self-train.py)
#   convert       llama.cpp's convert_hf_to_gguf.py --outtype q8_0 (no quantiser to build), the
#                 original file's tokenizer and chat template grafted back
#   eval after    the same greedy accuracy on EVAL of the trained model
#
# EVAL and TRAIN share no problem: the round is judged on problems it never saw. Everything goes to
# OUT (target/self-train); the summary is OUT/report.json. Knobs: MODEL, TRAIN, EVAL, N, STEPS, LR,
# BATCH, MAX_TOKENS, WORKERS, THREADS (PONDER_TRL_THREADS for torch).
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
TRAIN=${TRAIN:-data/arith40.jsonl}
EVAL=${EVAL:-data/dev-wordproblems.jsonl}
N=${N:-8}
STEPS=${STEPS:-200}
LR=${LR:-1e-5}
BATCH=${BATCH:-4}
MAX_TOKENS=${MAX_TOKENS:-160}
WORKERS=${WORKERS:-4}
OUT=${OUT:-target/self-train}
PONDER=target/release/ponder
export OMP_WAIT_POLICY=PASSIVE

log() { printf 'self-train: %s\n' "$*" >&2; }
[ -x "$PONDER" ] || { log "$PONDER not built — run make build"; exit 1; }
[ -f "$MODEL" ] || { log "model file $MODEL not found — run make model"; exit 1; }
PY=$(bash scripts/setup-trl.sh)
bash scripts/build-server.sh  # the pinned llama-cpp-python sdist, whose llama.cpp has the converter

# The problems the round trains on must not be the ones it is judged on.
python3 - "$TRAIN" "$EVAL" <<'EOF'
import json, sys
def questions(path):
    return {json.loads(l)["question"] for l in open(path) if l.strip()}
shared = questions(sys.argv[1]) & questions(sys.argv[2])
if shared:
    sys.exit(f"self-train: {len(shared)} problems are in both {sys.argv[1]} and {sys.argv[2]}")
EOF

rm -rf "$OUT"
mkdir -p "$OUT"
# llama.cpp's HF -> GGUF converter and the gguf-py it was written with, from the same sdist as
# llama-server.
conv=$OUT/llama.cpp
mkdir -p "$conv"
sdist=$(ls target/llama-server/llama_cpp_python-*.tar.gz)
top=$(basename "$sdist" .tar.gz)
tar xzf "$sdist" -C "$conv" --strip-components=3 \
  "$top/vendor/llama.cpp/convert_hf_to_gguf.py" "$top/vendor/llama.cpp/conversion" "$top/vendor/llama.cpp/gguf-py"

# Greedy: one sample at temperature 0, so that the accuracy is the model's, not the sampler's.
cat >"$OUT/greedy.json" <<EOF
{"type":"best_of_n","n":1,"max_tokens":$MAX_TOKENS,"sampling":{"temperature":0.0}}
EOF

declare -A secs
stage() {  # stage NAME COMMAND...: runs it, logs its command and wall time
  local name=$1; shift
  log "$name: $*"
  local t0; t0=$(date +%s)
  "$@"
  secs[$name]=$(( $(date +%s) - t0 ))
  log "$name: ${secs[$name]} s"
}
evaluate() {  # evaluate MODEL_FILE JSON_OUT
  "$PONDER" eval --model "$1" --config "$OUT/greedy.json" --dataset "$EVAL" --workers "$WORKERS" \
    --json >"$2"
}
to_gguf() {  # to_gguf HF_DIR OUT.gguf
  "$PY" "$conv/convert_hf_to_gguf.py" "$1" --outtype q8_0 --outfile "$1.q8_0.gguf" >"$1.convert.log" 2>&1 \
    || { tail -20 "$1.convert.log" >&2; return 1; }
  "$PY" scripts/self-train.py --graft "$MODEL" "$1.q8_0.gguf" "$2"
}

control() {  # MODEL untrained through the same conversion
  "$PY" scripts/self-train.py --no-train "$MODEL" "$OUT/control-hf" >/dev/null 2>"$OUT/control.log" \
    || { tail -20 "$OUT/control.log" >&2; return 1; }
  to_gguf "$OUT/control-hf" "$OUT/control.gguf"
}
synth() {
  "$PONDER" synth --model "$MODEL" --input "$TRAIN" --output "$OUT/synth" --strategy best-of-n \
    --n "$N" --max-tokens "$MAX_TOKENS" --oracle --formats sft --workers "$WORKERS" --json >"$OUT/synth.json"
}
train() {
  "$PY" scripts/self-train.py "$OUT/synth/sft.jsonl" "$MODEL" "$OUT/trained-hf" --steps "$STEPS" \
    --lr "$LR" --batch "$BATCH" >"$OUT/train.json" 2>"$OUT/train.log" \
    || { tail -20 "$OUT/train.log" >&2; return 1; }
}

stage eval_before evaluate "$MODEL" "$OUT/eval-before.json"
stage control_convert control
stage eval_control evaluate "$OUT/control.gguf" "$OUT/eval-control.json"
stage synth synth
stage train train
stage convert to_gguf "$OUT/trained-hf" "$OUT/trained.gguf"
stage eval_after evaluate "$OUT/trained.gguf" "$OUT/eval-after.json"

times="{"
for k in "${!secs[@]}"; do times+="\"$k\":${secs[$k]},"; done
times="${times%,}}"
python3 - "$OUT" "$times" "$MODEL" "$TRAIN" "$EVAL" <<'EOF'
import json, sys
out, times, model, train, ev = sys.argv[1], json.loads(sys.argv[2]), *sys.argv[3:]
acc = lambda name: json.load(open(f"{out}/eval-{name}.json"))
report = {
    "model": model, "train": train, "eval": ev,
    "eval_before": acc("before")["accuracy"],
    "eval_control": acc("control")["accuracy"],
    "eval_after": acc("after")["accuracy"],
    "problems": acc("after")["problems"],
    "synth_accuracy": json.load(open(f"{out}/synth.json"))["accuracy"],
    "synth_pass_at_n": json.load(open(f"{out}/synth.json"))["pass_at_n"],
    "sft_records": sum(1 for l in open(f"{out}/synth/sft.jsonl") if l.strip()),
    # The trainer logs its steps on stdout too: the summary is the last line.
    "training": json.loads(open(f"{out}/train.json").read().splitlines()[-1]),
    "seconds": times,
}
json.dump(report, open(f"{out}/report.json", "w"), indent=2)
print(json.dumps(report, indent=2))
d = report["eval_after"] - report["eval_control"]
verdict = "helped" if d > 0 else "did not help" if d == 0 else "hurt"
print(f"self-train: greedy accuracy on {ev}: before {report['eval_before']:.3f} (control {report['eval_control']:.3f}), "
      f"after {report['eval_after']:.3f}: the round {verdict} ({d:+.3f} against the control)", file=sys.stderr)
EOF
