#!/usr/bin/env bash
# Regenerates the CLI output the guide shows: each example's command runs here and its output is
# written to docs/src/examples/NAME.txt, which the pages include with {{#include examples/NAME.txt}}.
# Run it after a change to the CLI's output, then commit the files (git diff shows what moved).
# Needs the default model (make model) and a release build; about two minutes on 2 cores.
#
# Not produced here, and marked as such on their pages: outputs that take minutes or a second
# model (best-of-N on the reasoner, eval over 20 problems, the bench ladder, the R3 synth run, the
# deepening and hand-picked MCTS trees, serve and remote sessions, the C example's output) and the
# figures of the dated measurement pages, which are raw output of the commands named there.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
BIN=${PONDER_BIN:-target/release/ponder}
OUT=docs/src/examples
MODEL=${PONDER_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -x "$BIN" ] || cargo build --release -p ponder-cli
[ -f "$MODEL" ] || bash scripts/setup.sh
mkdir -p "$OUT"

# example NAME COMMAND...: "$ COMMAND" then its stdout and stderr, as a terminal shows them. Paths
# of this checkout are written as ponder's own relative ones, so the files do not depend on where
# the repository lives.
example() {
  local name=$1
  shift
  local shown=ponder a
  for a in "${@:2}"; do
    if [[ $a =~ [^A-Za-z0-9_./=:@%+,-] ]]; then shown+=" \"$a\""; else shown+=" $a"; fi
  done
  {
    echo "\$ $shown"
    "$@" 2>&1 || echo "(exit status $?)"
  } | sed "s#$PWD/##g" >"$OUT/$name.txt"
  echo "docs-examples: $OUT/$name.txt" >&2
}

example devices "$BIN" devices
example print-config "$BIN" solve --strategy mcts --k 3 --budget 512 --print-config "What is 6 times 7?"
example unknown-rerank "$BIN" solve --rerank oracle "What is 6 times 7?"
example generate-json "$BIN" generate --threads 1 --prompt "What is 7 * 6?" -n 4 --max-tokens 24 --seed 1 --json
example solve-mcts "$BIN" solve --threads 1 --strategy mcts --budget 120 --max-tokens 30 --answer 42 "What is 6 times 7?"
example solve-best-of-n "$BIN" solve --threads 1 --strategy best-of-n --n 4 --max-tokens 96 --answer 42 "What is 6 times 7?"
example self-correct "$BIN" solve --threads 1 --strategy self-correct --max-tokens 96 --answer 17 "A farmer has 15 sheep. He buys 8 more and then sells 6. How many sheep does he have now?"
example eval "$BIN" eval --threads 1 --dataset data/arith40.jsonl --limit 3 --strategy best-of-n --n 4 --max-tokens 96
example deepening "$BIN" solve --threads 1 --strategy deepening --n 2 --max-tokens 320 --answer 17 "A farmer has 15 sheep. He buys 8 more and then sells 6. How many sheep does he have now?"
example gpu-layers "$BIN" generate --threads 1 --prompt "Name a colour." --max-tokens 8 --seed 1 --gpu-layers 99

# A small synth run (MCTS, 4 problems, with the reference) and the first record of each format.
SYNTH=$(mktemp -d)
trap 'rm -rf "$SYNTH"' EXIT
example synth "$BIN" synth --threads 1 --input data/arith40.jsonl --limit 4 --output "$SYNTH/out" \
  --strategy mcts --budget 300 --max-tokens 48 --oracle --formats sft,preference,prm,correction
sed -i "s#$SYNTH/out#OUT#g" "$OUT/synth.txt"
for format in sft preference prm correction; do
  head -n 1 "$SYNTH/out/$format.jsonl" >"$OUT/record-$format.json"
done
echo "docs-examples: $OUT/record-{sft,preference,prm,correction}.json" >&2
