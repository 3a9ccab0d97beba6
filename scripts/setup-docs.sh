#!/usr/bin/env bash
# The guide's tool and build. mdbook, pinned, lives in the project's own tool dir
# (target/tools/bin/mdbook), installed once with `cargo install --locked` (about 4 minutes on 2
# cores; nothing when it is already there).
#
#   scripts/setup-docs.sh         install mdbook if missing; print its path
#   scripts/setup-docs.sh build   install, then build the guide into target/book/ (make docs)
#   scripts/setup-docs.sh ci      what make test runs: build the guide only when its sources
#                                 changed since it last built cleanly
#
# "Changed" is a sha256 over book.toml, docs/src/ and the C example the C ABI page includes,
# compared with docs/book-built.sha256, which every clean build rewrites and which is committed
# with the pages. So CI installs mdbook and builds only for a commit whose guide nobody built;
# `make docs` (or `scripts/setup-docs.sh build`) before committing a page keeps CI from paying the
# install. PONDER_DOCS=always builds regardless.
set -euo pipefail
cd "$(dirname "$0")/.."

MDBOOK_VERSION=0.4.52
ROOT=target/tools
BIN=$ROOT/bin/mdbook
STAMP=docs/book-built.sha256

install() {
  if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -qx "mdbook v$MDBOOK_VERSION"; then
    return
  fi
  echo "setup-docs: installing mdbook $MDBOOK_VERSION into $ROOT (once, about 4 minutes)" >&2
  cargo install --locked mdbook --version "$MDBOOK_VERSION" --root "$ROOT" >&2
}

sources_hash() {
  { echo book.toml; find docs/src crates/ponder-capi/examples -type f; } |
    LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1
}

build() {
  install
  "$BIN" build
  sources_hash >"$STAMP"
  echo "setup-docs: the guide is in target/book/index.html" >&2
}

case "${1:-install}" in
  install)
    install
    echo "$BIN"
    ;;
  build)
    build
    ;;
  ci)
    if [ "${PONDER_DOCS:-}" != always ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(sources_hash)" ]; then
      echo "setup-docs: the guide's sources are those of its last clean build ($STAMP); mdbook skipped" >&2
    else
      build
    fi
    ;;
  *)
    echo "usage: scripts/setup-docs.sh [install|build|ci]" >&2
    exit 2
    ;;
esac
