#!/usr/bin/env bash
# Installs what the integration tests need besides Rust: the official MCP
# Python SDK (tests/integration/requirements.txt) in a venv under cargo's
# target directory, where tests/integration/sdk.rs looks for it. The tests
# never install anything themselves, so `cargo test` stays offline-safe and a
# missing SDK fails loudly instead of being fetched mid-test.
# Also Chromium and playwright-core for the admin page's browser test, and
# the npm MCP software of tests/integration/sdk_clients.rs.
# Idempotent and fast: the venv is reused while its marker matches the
# requirements file; only a changed pin reinstalls.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUIREMENTS=tests/integration/requirements.txt
TARGET_DIR=${CARGO_TARGET_DIR:-target}
# Cargo's CARGO_TARGET_TMPDIR for integration tests is $TARGET_DIR/tmp.
VENV=$TARGET_DIR/tmp/mcp-sdk-venv
MARKER=$VENV/.installed

# Real programs the deployment tests run (tests/integration/deploy.rs,
# conf_files.rs, behind_proxies.rs): nginx and Caddy in front of the
# gateway, promtool for the alert rules, systemd-analyze for the unit.
missing_packages=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing_packages+=(nginx-light)
command -v caddy >/dev/null 2>&1 || missing_packages+=(caddy)
command -v promtool >/dev/null 2>&1 || missing_packages+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || missing_packages+=(systemd)
command -v openssl >/dev/null 2>&1 || missing_packages+=(openssl)
# The admin page's browser test drives Debian's Chromium. A Node from
# elsewhere (e.g. NodeSource) brings its own npm; Debian's would conflict.
command -v chromium >/dev/null 2>&1 || missing_packages+=(chromium)
command -v npm >/dev/null 2>&1 || missing_packages+=(npm)
if [ ${#missing_packages[@]} -gt 0 ]; then
  echo "install-test-deps: installing ${missing_packages[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    $sudo apt-get update -qq
    # --no-install-recommends: no prometheus exporters or services pulled in.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      "${missing_packages[@]}" >/dev/null
  else
    echo "install-test-deps: please install ${missing_packages[*]}" >&2
    exit 1
  fi
fi

install_sdk() {
if [ -x "$VENV/bin/python" ] && [ -f "$MARKER" ] && cmp -s "$REQUIREMENTS" "$MARKER"; then
  return 0
fi

# A Debian python3 lacks venv/ensurepip until python3-venv is installed.
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "install-test-deps: installing python3 with venv"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3 python3-venv >/dev/null
  else
    echo "install-test-deps: please install python3 with the venv module" >&2
    exit 1
  fi
fi

echo "install-test-deps: installing $(grep -v '^#' "$REQUIREMENTS" | xargs) into $VENV"
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS"
# Written last: an interrupted install is redone next time, not trusted.
cp "$REQUIREMENTS" "$MARKER"
}
install_sdk

# The admin page's browser test: playwright-core, pinned in
# tests/browser/package.json, installed beside it.
BROWSER_DIR=tests/browser
BROWSER_MARKER=$BROWSER_DIR/node_modules/.installed
if ! { [ -f "$BROWSER_MARKER" ] && cmp -s "$BROWSER_DIR/package.json" "$BROWSER_MARKER"; }; then
  echo "install-test-deps: installing playwright-core into $BROWSER_DIR/node_modules"
  (cd "$BROWSER_DIR" && npm install --silent --no-audit --no-fund --no-save >/dev/null)
  cp "$BROWSER_DIR/package.json" "$BROWSER_MARKER"
fi

# MCP software nobody here wrote, for tests/integration/sdk_clients.rs: the
# official TypeScript SDK, @modelcontextprotocol/server-everything (the
# upstream), the MCP Inspector (its headless CLI mode) and ws/wscat, at the
# versions of tests/mcp-clients/package-lock.json. The marker is the lock
# file they were installed from.
CLIENTS_DIR=tests/mcp-clients
CLIENTS_MARKER=$CLIENTS_DIR/node_modules/.installed
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' 2>/dev/null; then
  echo "install-test-deps: the MCP clients need Node.js 18 or later; found $(node --version 2>/dev/null || echo none)" >&2
  exit 1
fi
if ! { [ -f "$CLIENTS_MARKER" ] && cmp -s "$CLIENTS_DIR/package-lock.json" "$CLIENTS_MARKER"; }; then
  echo "install-test-deps: installing the MCP clients of $CLIENTS_DIR/package-lock.json into $CLIENTS_DIR/node_modules"
  # Not `npm ci`: the Inspector's vite lists an optional Windows-only
  # package the registry does not serve, so the lock cannot name it and
  # `npm ci` refuses the lock as out of sync. `npm install` from a clean
  # node_modules installs exactly the locked versions just the same;
  # --no-save keeps the lock as committed, and a lock it would have changed
  # is an error. --loglevel=error: the Inspector's `engines` asks for a
  # newer Node than Debian's, but its CLI mode runs on Node 20 (the tests
  # prove it), so that warning is noise here.
  lock_before=$(sha256sum "$CLIENTS_DIR/package-lock.json")
  rm -rf "$CLIENTS_DIR/node_modules"
  if ! (cd "$CLIENTS_DIR" && npm install --no-save --no-audit --no-fund --loglevel=error >/dev/null); then
    echo "install-test-deps: npm install in $CLIENTS_DIR failed (see above)" >&2
    exit 1
  fi
  if [ "$(sha256sum "$CLIENTS_DIR/package-lock.json")" != "$lock_before" ]; then
    echo "install-test-deps: $CLIENTS_DIR/package-lock.json is out of step with package.json; run npm install there and commit the lock" >&2
    exit 1
  fi
  cp "$CLIENTS_DIR/package-lock.json" "$CLIENTS_MARKER"
fi
