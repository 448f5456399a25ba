# hookmesh — common tasks. `make help` lists them.
CARGO ?= cargo

.PHONY: help run test lint fmt build release clean

help:
	@echo "make run      run hookmesh standalone (embedded backends) on 127.0.0.1:7600 (gRPC) / :7601 (admin)"
	@echo "make test     run the whole test suite (unit, conformance, end-to-end)"
	@echo "make lint     rustfmt check and clippy with warnings as errors"
	@echo "make release  build the release binary (target/release/hookmesh)"

run:
	$(CARGO) run --release -p hookmesh -- standalone

test:
	$(CARGO) test --workspace --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --workspace --locked

release:
	$(CARGO) build --release -p hookmesh --locked
