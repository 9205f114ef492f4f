# The commands a newcomer needs; each installs missing build prerequisites first.
.PHONY: deps deps-test build run test lint bench bench-smoke fuzz clean install

deps:
	@scripts/install-deps.sh

## What the integration tests need besides Rust (the MCP Python SDK, pinned in
## tests/integration/requirements.txt; the npm MCP clients and server-everything
## of tests/mcp-clients/package-lock.json); the tests fail loudly without them.
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
## Pingora proxy and the gateway under the same load, then the federation
## endpoints (/tools/invoke, virtual servers, /mcp, GET /tools at 1,000 servers
## x 100 tools); rewrites BENCHMARKS.md.
## Settings by environment, e.g. DURATION=30s ROUNDS=5 make bench-load.
.PHONY: bench-load bench-load-smoke
bench-load: deps
	BENCH_COMMAND="make bench-load" benches/load/run.sh

## One short round of everything: does the benchmark still run? (no figures)
## It runs the debug binaries, which `make test` has built already: no figure
## of a smoke run means anything, and a release build would double CI's time.
bench-load-smoke: deps
	cargo build --bins --examples
	MODE=smoke SKIP_BUILD=1 BIN_DIR=target/debug BENCH_COMMAND="make bench-load-smoke" benches/load/run.sh

## Installs what `make build` made (run that first, as yourself; then this,
## as root): binaries in $(PREFIX)/bin, the systemd unit in
## $(PREFIX)/lib/systemd/system, also as the template mcp-gateway@.service that a
## binary upgrade starts instances of (systemd reads units there for PREFIX=/usr/local;
## set UNITDIR=/etc/systemd/system otherwise), README, the example
## environment, server file and conf/ in $(PREFIX)/share/doc/mcp-gateway,
## and, only where absent, $(SYSCONFDIR)/mcp-gateway/{gateway.yaml,env}: an
## upgrade never overwrites a configuration. DESTDIR stages for packaging;
## BUILD_DIR picks other binaries (the tests install the debug ones).
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR ?= $(PREFIX)/share/doc/mcp-gateway
BUILD_DIR ?= target/release
install:
	@test -x $(BUILD_DIR)/mcp-gateway || { echo "make install: $(BUILD_DIR)/mcp-gateway is missing: run make build first" >&2; exit 1; }
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/mcp-gateway
	install -m 0755 $(BUILD_DIR)/mcp-gateway $(BUILD_DIR)/mcp-demo-server $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|/usr/local|$(PREFIX)|g' -e 's|/etc/mcp-gateway|$(SYSCONFDIR)/mcp-gateway|g' \
	  systemd/mcp-gateway.service > $(DESTDIR)$(UNITDIR)/mcp-gateway.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/mcp-gateway.service
	install -m 0644 $(DESTDIR)$(UNITDIR)/mcp-gateway.service $(DESTDIR)$(UNITDIR)/mcp-gateway@.service
	install -m 0644 README.md systemd/mcp-gateway.env.example $(DESTDIR)$(DOCDIR)/
	cp -R conf $(DESTDIR)$(DOCDIR)/
	test -e $(DESTDIR)$(SYSCONFDIR)/mcp-gateway/gateway.yaml || \
	  install -m 0644 conf/gateway.yaml $(DESTDIR)$(SYSCONFDIR)/mcp-gateway/gateway.yaml
	test -e $(DESTDIR)$(SYSCONFDIR)/mcp-gateway/env || \
	  install -m 0600 systemd/mcp-gateway.env.example $(DESTDIR)$(SYSCONFDIR)/mcp-gateway/env
