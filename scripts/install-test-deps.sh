#!/usr/bin/env bash
# Installs what the integration tests need besides Rust: the official MCP
# Python SDK (tests/integration/requirements.txt) in a venv under cargo's
# target directory, where tests/integration/sdk.rs looks for it. The tests
# never install anything themselves, so `cargo test` stays offline-safe and a
# missing SDK fails loudly instead of being fetched mid-test.
# Also Chromium and playwright-core for the admin page's browser test.
# Idempotent and fast: the venv is reused while its marker matches the
# requirements file; only a changed pin reinstalls.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUIREMENTS=tests/integration/requirements.txt
TARGET_DIR=${CARGO_TARGET_DIR:-target}
# Cargo's CARGO_TARGET_TMPDIR for integration tests is $TARGET_DIR/tmp.
VENV=$TARGET_DIR/tmp/mcp-sdk-venv
MARKER=$VENV/.installed

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

# The admin page's browser test: Debian's Chromium and playwright-core
# (pinned in tests/browser/package.json, installed beside it).
BROWSER_DIR=tests/browser
BROWSER_MARKER=$BROWSER_DIR/node_modules/.installed
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
# A Node from elsewhere (e.g. NodeSource) brings its own npm; Debian's would
# conflict with it.
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
  echo "install-test-deps: installing$missing"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    # Quiet unless it fails (debconf chatters on stderr).
    log=$(mktemp)
    if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >"$log" 2>&1; then
      cat "$log" >&2
      rm -f "$log"
      exit 1
    fi
    rm -f "$log"
  else
    echo "install-test-deps: please install$missing" >&2
    exit 1
  fi
fi
if ! { [ -f "$BROWSER_MARKER" ] && cmp -s "$BROWSER_DIR/package.json" "$BROWSER_MARKER"; }; then
  echo "install-test-deps: installing playwright-core into $BROWSER_DIR/node_modules"
  (cd "$BROWSER_DIR" && npm install --silent --no-audit --no-fund --no-save >/dev/null)
  cp "$BROWSER_DIR/package.json" "$BROWSER_MARKER"
fi
