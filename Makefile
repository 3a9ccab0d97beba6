# ponder — two commands from a fresh machine:
#   make demo   set up, build, and run the main job on the default model
#   make test   set up, build, and run every test (what CI runs)
#
# One Cargo profile (release) for everything: llama.cpp is rebuilt per profile, so building,
# testing, linting and benchmarking all share target/release.

CARGO ?= cargo
MODEL ?= models/SmolLM2-135M-Instruct.Q4_1.gguf
DEMO_PROMPT ?= A farmer has 15 sheep. He buys 8 more and then sells 6. How many sheep does he have now?

.PHONY: all setup model test-models build demo test check lint doc bench clean

all: build

# apt packages (cmake, libclang-dev) when missing, and the default model when missing.
setup:
	bash scripts/setup.sh

model: setup

build: setup
	$(CARGO) build --release

demo: build
	./target/release/ponder solve --model $(MODEL) --strategy best-of-n --n 8 --rerank judge --answer 17 "$(DEMO_PROMPT)"

test-models:
	bash scripts/setup.sh --test-models

test: test-models
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --release --no-deps
	$(CARGO) test --release

bench: setup
	$(CARGO) bench --bench decode
	$(CARGO) bench --bench judge
	$(CARGO) bench --bench search

clean:
	$(CARGO) clean
