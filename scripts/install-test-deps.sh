#!/usr/bin/env bash
# Installs what the integration tests need besides Rust: the official MCP
# Python SDK (tests/integration/requirements.txt) in a venv under cargo's
# target directory, where tests/integration/sdk.rs looks for it. The tests
# never install anything themselves, so `cargo test` stays offline-safe and a
# missing SDK fails loudly instead of being fetched mid-test.
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

if [ -x "$VENV/bin/python" ] && [ -f "$MARKER" ] && cmp -s "$REQUIREMENTS" "$MARKER"; then
  exit 0
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
