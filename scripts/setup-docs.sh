#!/usr/bin/env bash
# mdbook, pinned, into the project's own tool dir (target/tools/bin/mdbook). Idempotent: nothing is
# done when that binary already exists at the pinned version. Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."

MDBOOK_VERSION=0.4.52
ROOT=target/tools
BIN=$ROOT/bin/mdbook

if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -qx "mdbook v$MDBOOK_VERSION"; then
  echo "$BIN"
  exit 0
fi
echo "setup-docs: installing mdbook $MDBOOK_VERSION into $ROOT (once)" >&2
cargo install --locked mdbook --version "$MDBOOK_VERSION" --root "$ROOT" >&2
echo "$BIN"
