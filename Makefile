# hookmesh — common tasks. `make help` lists them.
CARGO ?= cargo

.PHONY: help run deps test console-screenshots lint fmt build release clean fuzz bench helm

help:
	@echo "make run      run hookmesh standalone (embedded backends) on 127.0.0.1:7600 (gRPC) / :7601 (admin)"
	@echo "make test     run the whole test suite (unit, conformance, end-to-end, faults); installs"
	@echo "             what the tests need first (make deps)"
	@echo "make deps     install or find what the tests need: redis-server and PostgreSQL (Debian"
	@echo "             packages; PostgreSQL started on 127.0.0.1:5432), the tansu Kafka broker"
	@echo "             (cargo install, once; ~/.cargo/bin), and chromium + chromium-driver (Debian"
	@echo "             packages) for the console's browser tests"
	@echo "make console-screenshots  run the browser tests, writing their screenshots to docs/console"
	@echo "make lint     rustfmt check and clippy with warnings as errors"
	@echo "make release  build the release binary (target/release/hookmesh)"
	@echo "make bench    every bench scenario on memory, baseline on kafka-redis (docs/perf/*.json)"
	@echo "make fuzz     run every cargo-fuzz target for FUZZ_SECONDS (default 60) each"
	@echo "make helm     lint, render and schema-check the Helm chart helm/hookmesh, statically check"
	@echo "             the wiring of docker-compose.yml (Python venv in .ci/.venv)"

run:
	$(CARGO) run --release -p hookmesh -- standalone

# The tests start their own redis-server and tansu on free loopback ports; this finds them or
# installs them (apt-get needs root, as on CI machines; otherwise install redis-server yourself).
TANSU_VERSION ?= 0.6.0
deps:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "== installing redis-server (Debian package)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
	@command -v tansu >/dev/null 2>&1 || [ -x "$$HOME/.cargo/bin/tansu" ] || { \
		echo "== installing the tansu broker (cargo install, a few minutes, once)"; \
		$(CARGO) install tansu --version $(TANSU_VERSION) --locked --features dynostore; }
	@command -v psql >/dev/null 2>&1 || { \
		echo "== installing PostgreSQL (Debian package; loopback connections trusted, for the tests)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null && \
		sed -i -E 's#^(host +all +all +127\.0\.0\.1/32 +)[a-z0-9-]+#\1trust#' /etc/postgresql/*/main/pg_hba.conf; }
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
		echo "== starting PostgreSQL"; \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /usr/lib/postgresql | sort -n | tail -1) main start 2>/dev/null || \
			service postgresql start; \
		for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }
	@v=$$(psql "$${HOOKMESH_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}" -qAtc "SHOW server_version") || { \
		echo "PostgreSQL on 127.0.0.1:5432 does not let the role postgres in: trust loopback, or set HOOKMESH_TEST_POSTGRES"; \
		exit 1; }; echo "postgres: $$v"
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { \
		echo "== installing chromium and chromium-driver (Debian packages, for the browser tests)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@redis-server --version
	@chromedriver --version
	@echo "tansu: $$(command -v tansu || echo $$HOME/.cargo/bin/tansu)"

test: deps
	$(CARGO) test --workspace --locked

# The README's console screenshots are the browser tests' own.
console-screenshots: deps
	HOOKMESH_SCREENSHOTS=$(CURDIR)/docs/console $(CARGO) test -p hookmesh --test console --locked

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --workspace --locked

release:
	$(CARGO) build --release -p hookmesh --locked

# Benchmarks (README "Benchmarks"): every scenario on the embedded backends, then the baseline
# over tansu + redis-server with the four roles as separate processes. Reports in docs/perf/.
bench:
	$(CARGO) build --release -p hookmesh
	target/release/hookmesh bench --scenario all --backend memory --out docs/perf/bench-memory.json
	target/release/hookmesh bench --scenario baseline --backend kafka-redis --out docs/perf/bench-kafka-redis.json

# Fuzzing (fuzz/, its own cargo workspace). Needs `cargo install cargo-fuzz --locked`; runs on
# the stable toolchain through RUSTC_BOOTSTRAP=1 (cargo fuzz passes nightly-only -Z flags).
# Seeds are read from fuzz/corpus/<target> (kept in git); what a run finds goes to the
# git-ignored fuzz/target/corpus/<target>, crashes to fuzz/artifacts/<target>.
# `make fuzz FUZZ_SECONDS=300 FUZZ_TARGETS=event_parser` for one longer run.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= event_parser template_compile_render field_extractor hostile_token_values masking
FUZZ_ENV = RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(CURDIR)/fuzz/target

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
		mkdir -p fuzz/target/corpus/$$t && \
		$(FUZZ_ENV) $(CARGO) fuzz run $$t fuzz/target/corpus/$$t fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=30 -print_final_stats=1 || exit 1; \
	done

# Helm chart check: helm lint + helm template (Helm's Go SDK through the helm-python-sdk
# package, no helm binary), Kubernetes schema validation and assertions on the rendered
# manifests. Then tests/compose/check_compose.py checks the wiring of docker-compose.yml and
# deploy/otel-collector.yaml without Docker. Creates .ci/.venv and installs
# tests/helm/requirements.txt on first use.
helm:
	bash tests/helm/run.sh
