#!/usr/bin/env bash
# Installs what building mcp-gateway needs and this machine lacks: cmake
# (Pingora's zlib-ng), pkg-config and the OpenSSL headers, and a Rust
# toolchain. Safe to run again: it installs nothing that is already there.
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if ! pkg-config --exists openssl 2>/dev/null; then missing+=(openssl-headers); fi
command -v cc >/dev/null 2>&1 || missing+=(cc)

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq cmake pkg-config libssl-dev build-essential >/dev/null
  elif command -v dnf >/dev/null 2>&1; then
    $sudo dnf install -y cmake pkgconf-pkg-config openssl-devel gcc gcc-c++ make
  elif command -v brew >/dev/null 2>&1; then
    brew install cmake pkg-config openssl@3
  else
    echo "install-deps: please install: ${missing[*]}" >&2
    exit 1
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: installing the Rust toolchain with rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  echo "install-deps: run 'source \$HOME/.cargo/env' or open a new shell"
fi
