#!/usr/bin/env bash
# Runs the cargo-fuzz (libFuzzer) targets of fuzz/ for a bounded time each;
# exits non-zero on the first crash, leaving the reproducer under
# fuzz/artifacts/<target>/; replay one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz -s none --codegen-units 16 <target> <file>
#
#   scripts/fuzz.sh                      every target, FUZZ_SECONDS (30) each
#   FUZZ_SECONDS=600 scripts/fuzz.sh identity
#   FUZZ_SANITIZER=address scripts/fuzz.sh   ASan too (slower build and runs)
#   FUZZ_CODEGEN_UNITS=1 ...                  slower build, faster fuzzing
#   FUZZ_PROFILE=release ...                  optimised: for long runs
#
# The machine has only stable Rust; cargo fuzz passes nightly flags
# (-Zsanitizer, -Cpasses=sancov-module), which stable rustc accepts with
# RUSTC_BOOTSTRAP=1, set for these cargo calls only.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-30}
# No sanitizer by default: the targets are safe Rust, where a bug shows as a
# panic, which libFuzzer catches either way; ASan (works here too) guards only
# the unsafe code of dependencies, at a cost measured here: 773 against 465
# CPU-seconds of build, and 4 to 15 times fewer executions per second.
FUZZ_SANITIZER=${FUZZ_SANITIZER:-none}
# Pinned: a cargo-fuzz release cannot change how CI fuzzes.
CARGO_FUZZ_VERSION=0.13.2

# libfuzzer-sys compiles libFuzzer itself, which is C++.
if ! command -v c++ >/dev/null 2>&1; then
  echo "fuzz: installing a C++ compiler"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq g++ >/dev/null
fi
if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
  cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

# The fuzz crate is its own workspace, outside `make test`'s cargo fmt.
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

export RUSTC_BOOTSTRAP=1
# Pingora asks for a vendored OpenSSL, built from source for every profile;
# no fuzz target touches TLS, so this build links the system's (install-deps
# installs its headers) and skips compiling OpenSSL once more (measured:
# 226 CPU-seconds, against 7 for openssl-sys on the system's).
export OPENSSL_NO_VENDOR=1
# cargo fuzz builds with one codegen unit for the fastest fuzzing; cargo's
# usual 16 lets a big crate use both cores, worth more to short runs.
flags=(--fuzz-dir fuzz --sanitizer "$FUZZ_SANITIZER" --codegen-units "${FUZZ_CODEGEN_UNITS:-16}")
# Unoptimised (with debug assertions, so an overflow is a finding) by
# default: CI's bounded runs are a regression guard, and optimising the
# whole dependency tree (Pingora, sqlx, rmcp) for them cost more build time
# than the runs themselves. Long runs want FUZZ_PROFILE=release.
case "${FUZZ_PROFILE:-dev}" in
  dev) flags+=(--dev) ;;
  release) flags+=(--release) ;;
  *)
    echo "fuzz: FUZZ_PROFILE must be dev or release (got '$FUZZ_PROFILE')" >&2
    exit 2
    ;;
esac
# Cargo features of the fuzz crate, if any are added.
if [ -n "${FUZZ_FEATURES:-}" ]; then flags+=(--features "$FUZZ_FEATURES"); fi
# One build of every target (they share the instrumented dependencies).
cargo fuzz build "${flags[@]}"
# The targets run side by side: each libFuzzer process uses one core, and
# the bounded time is wall time, so this costs FUZZ_SECONDS, not 3x that.
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
pids=()
for target in "${targets[@]}"; do
  echo "fuzz: $target for ${FUZZ_SECONDS}s"
  # -max_total_time bounds the run; a crash ends it with a non-zero status.
  cargo fuzz run "${flags[@]}" "$target" -- \
    -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 >"$logs/$target" 2>&1 &
  pids+=($!)
done
failed=()
for i in "${!targets[@]}"; do
  target=${targets[$i]}
  status=0
  wait "${pids[$i]}" || status=$?
  # libFuzzer's progress lines are left out; its stats and any crash are not.
  echo "---- fuzz: $target (exit $status)"
  grep -vE '^(#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|RELOAD)|[[:space:]]+Blocking waiting for file lock)' "$logs/$target" || true
  if [ "$status" -ne 0 ]; then failed+=("$target"); fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}; reproducers in fuzz/artifacts/<target>/" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} target(s), ${FUZZ_SECONDS}s each, no crash"
