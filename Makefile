# ponder — two commands from a fresh machine:
#   make demo   set up, build, fetch the reasoner, and let it solve a word problem by search
#   make test   set up, build, and run every test (what CI runs)
#
# One Cargo profile (release) for everything: llama.cpp is rebuilt per profile, so building,
# testing, linting and benchmarking all share target/release.

CARGO ?= cargo
MODEL ?= models/SmolLM2-135M-Instruct.Q4_1.gguf
# The model that reasons (Qwen2.5-Coder-0.5B-Instruct, 491 MB): the demo and the bench run on it.
REASONER ?= models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
DEMO_N ?= 4
DEMO_PROMPT ?= A farmer has 15 sheep. He buys 8 more and then sells 6. How many sheep does he have now?

.PHONY: docs all setup model reasoner reasoner-large test-models server pyenv trlenv self-train build cuda gpu-kit demo test features check lint doc bench bench-remote bench-concurrent bench-layouts bench-serve fuzz clean install install-files

all: build

# apt packages (cmake, libclang-dev) when missing, and the default model when missing.
setup:
	bash scripts/setup.sh

model: setup

reasoner: setup
	bash scripts/setup.sh --reasoner

build: setup
	$(CARGO) build --release

# The cuda feature, into its own target dir (CUDA_TARGET_DIR) so the CPU build stays as it is. Needs
# no GPU to compile: scripts/cuda-toolkit.sh assembles a CUDA 13 toolkit from PyPI wheels where
# none is installed. CMAKE_CUDA_ARCHITECTURES (default 90) picks the GPU generations.
CUDA_TARGET_DIR ?= target/cuda
cuda: setup
	eval "$$(bash scripts/cuda-toolkit.sh)" && \
	  CARGO_TARGET_DIR=$(CUDA_TARGET_DIR) $(CARGO) build --release --features cuda

# What scripts/gpu-check.sh needs on a GPU machine without Rust: the cuda builds of the CLI, the
# decode bench and the llama backend's tests, stripped and compressed, and the model in parts
# (target/gpu-kit; docs/src/gpu.md says how to use it).
gpu-kit: setup
	CUDA_TARGET_DIR=$(CUDA_TARGET_DIR) bash scripts/gpu-kit.sh

# Best-of-N on the reasoner: DEMO_N samples decoded together, every candidate with its answer and
# scores, and the one the search chose with its reasoning (about a minute on 2 cores).
demo: build reasoner
	./target/release/ponder solve --model $(REASONER) --strategy best-of-n --n $(DEMO_N) --max-tokens 320 --answer 17 "$(DEMO_PROMPT)"

# The 3x larger reasoner (Qwen2.5-Coder-1.5B-Instruct, 1.1 GB), for `ponder bench` only.
REASONER_LARGE ?= models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
reasoner-large: setup
	bash scripts/setup.sh --reasoner-large

test-models:
	bash scripts/setup.sh --test-models

# llama.cpp's llama-server (from the llama-cpp-python sdist), for the remote backend's tests.
server: setup
	bash scripts/build-server.sh

# The openai Python package in target/pyenv, for ponder serve's tests and bench-serve.
pyenv:
	bash scripts/setup-openai.sh >/dev/null

# TRL, transformers, datasets, torch and gguf in target/trlenv (pinned; about 3 minutes and 6 GB
# the first time, most of it torch's CUDA wheels), for the test that trains one step on every
# export format and for self-train.
trlenv:
	bash scripts/setup-trl.sh >/dev/null

# One round of the self-improvement loop on the default model: greedy accuracy on
# data/dev-wordproblems.jsonl before, synth (best-of-8, oracle) on data/arith40.jsonl, TRL SFT on
# the CPU, back to GGUF with llama.cpp's converter, accuracy after; report in
# target/self-train/report.json (scripts/self-train.sh says what to vary).
self-train: build trlenv server
	bash scripts/self-train.sh

# llama.cpp's OpenMP workers sleep instead of spinning while they wait: the tests run contexts
# side by side on few cores, where spinning workers slow each other down many-fold.
test: export OMP_WAIT_POLICY = PASSIVE
test: test-models server pyenv trlenv
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --release --workspace --no-deps
	bash scripts/check-docs.sh
	bash scripts/setup-docs.sh ci
	$(MAKE) --no-print-directory features
	$(CARGO) build --release --workspace
	$(CARGO) test --release --workspace

# The library on its own, as an embedder builds it: with no features and with each feature
# alone, warnings denied (a build of the library crate, not a test run; dependencies keep their
# build, so each takes about as long as compiling ponder once).
features:
	for f in "" remote serve bench; do \
	  echo "library with features: $${f:-none}"; \
	  $(CARGO) rustc --release -p ponder --lib --no-default-features $${f:+--features $$f} -- -D warnings || exit 1; \
	done

# The guide (docs/src, an mdBook) into target/book/: names and links checked against the code,
# then built with a pinned mdbook installed once into target/tools/. `make test` builds it only
# when its sources changed since the last clean build (scripts/setup-docs.sh says how).
docs:
	bash scripts/check-docs.sh
	bash scripts/setup-docs.sh build

bench: setup
	$(CARGO) bench --bench decode
	$(CARGO) bench --bench judge
	$(CARGO) bench --bench search

# The remote backend through local llama-servers, against the in-process backend (CLI runs).
bench-remote: build server
	bash scripts/bench-remote.sh

# Many solves on one context: ponder eval --workers 1..8 against llama-server -np 8 and
# llama-batched-bench (CLI runs; LIMIT problems, default 40).
bench-concurrent: build server
	bash scripts/bench-concurrent.sh

# The KV layouts side by side: aggregate decode rate against llama-batched-bench (with and
# without -kvu), best-of-8 against llama-server answering n: 8 (short and 8-shot prompts), eval
# --workers 1/4/8, MCTS and beam (CLI runs; MODEL, LIMIT, SECTIONS: see the script).
bench-layouts: build server
	bash scripts/bench-layouts.sh

# ponder serve under load: 8 openai clients through 10 arithmetic problems with bon-… (best-of-8,
# judge): requests/min, p50/p95 latency (scripts/bench-serve.sh says what to vary).
bench-serve: build server pyenv
	bash scripts/bench-serve.sh

# Every fuzz target for FUZZ_SECONDS each (cargo-fuzz; on a stable toolchain through
# RUSTC_BOOTSTRAP, without a sanitizer). Crashes land in fuzz/artifacts/TARGET/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= answer strategy_config dataset_line trace_json c_abi
fuzz: setup
	command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t --release --sanitizer none -- \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

# Installs libponder (shared and static), include/ponder.h and a pkg-config file under PREFIX.
PREFIX ?= /usr/local
LIBDIR ?= target/release
CAPI := crates/ponder-capi
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

install: build install-files

install-files:
	install -d $(PREFIX)/lib $(PREFIX)/include $(PREFIX)/lib/pkgconfig
	install -m 755 $(LIBDIR)/libponder.so $(PREFIX)/lib/
	if [ -f $(LIBDIR)/libponder.a ]; then install -m 644 $(LIBDIR)/libponder.a $(PREFIX)/lib/; fi
	install -m 644 $(CAPI)/include/ponder.h $(PREFIX)/include/
	sed -e 's|@PREFIX@|$(abspath $(PREFIX))|' -e 's|@VERSION@|$(VERSION)|' $(CAPI)/ponder.pc.in > $(PREFIX)/lib/pkgconfig/ponder.pc

clean:
	$(CARGO) clean
