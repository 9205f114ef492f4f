# The commands a newcomer needs; each installs missing build prerequisites first.
.PHONY: deps deps-test build run test lint bench bench-smoke fuzz clean

deps:
	@scripts/install-deps.sh

## What the integration tests need besides Rust (the MCP Python SDK, pinned in
## tests/integration/requirements.txt); the tests fail loudly without it.
deps-test:
	@scripts/install-test-deps.sh

build: deps
	cargo build --release --bins

## Build and run the demo MCP server + the gateway on its defaults (proxy mode).
run: build
	scripts/run-demo.sh

## Everything CI checks: formatting, lints, unit and integration tests.
test: deps deps-test
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo test --all-targets
	@if [ -z "$$TEST_DATABASE_URL$$TEST_REDIS_URL" ]; then \
	  echo "NOTE: TEST_DATABASE_URL is not set: the registry tests ran against SQLite only (TEST_REDIS_URL: nothing uses it yet)."; \
	fi

lint: deps
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

## Criterion benchmarks of the per-request decisions.
bench: deps
	cargo bench --bench decisions

## Coverage-guided fuzzing (cargo fuzz, libFuzzer) of the header policy,
## session tokens and identity extraction: FUZZ_SECONDS (30) per target;
## installs cargo-fuzz if missing. E.g. FUZZ_SECONDS=600 make fuzz.
fuzz: deps
	scripts/fuzz.sh

clean:
	cargo clean

## Load benchmark (benches/load/run.sh): the upstream direct, nginx, a bare
## Pingora proxy and the gateway under the same load; rewrites BENCHMARKS.md.
## Settings by environment, e.g. DURATION=30s ROUNDS=5 make bench-load.
.PHONY: bench-load bench-load-smoke
bench-load: deps
	BENCH_COMMAND="make bench-load" benches/load/run.sh

## One short round of everything: does the benchmark still run? (no figures)
bench-load-smoke: deps
	MODE=smoke BENCH_COMMAND="make bench-load-smoke" benches/load/run.sh
