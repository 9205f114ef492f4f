# shellcheck shell=bash
# Helpers shared by the load benchmarks (run.sh, contextforge.sh); sourced,
# not run. The caller sets LOG_TAG, FAIL_TAG, WORK, and the PIDS array and
# PID_OF map, and installs `trap cleanup EXIT`.

log() { printf '[%s %s] %s\n' "$LOG_TAG" "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  printf '\n%s FAILED: %s\n\n' "$FAIL_TAG" "$*" >&2
  exit 1
}

# Installs the named Debian packages (sudo unless root); the benchmarks drive
# real programs and should not fail half-way through for a missing one.
install_packages() {
  [ $# -eq 0 ] && return
  log "installing $*"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  command -v apt-get >/dev/null 2>&1 || die "please install: $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# N free loopback ports, space separated.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# Runs a program in the background in its own process group (so cleanup also
# ends what it forks), remembered for cleanup and for RSS readings. setsid
# execs in place: the pid is the program's own.
spawn() {
  local key=$1 logfile=$2
  shift 2
  setsid "$@" >"$logfile" 2>&1 &
  PIDS+=("$!")
  # shellcheck disable=SC2034 # read by the caller
  PID_OF["$key"]=$!
}

# Stops every spawned group (SIGTERM, then SIGKILL after 10 s) and removes
# the work directory unless KEEP_TMP=1.
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  fi
}

# The figures belong to the code that was built, which may be uncommitted
# (the caller sets ROOT).
revision() {
  local rev
  rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || {
    echo unknown
    return
  }
  if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    rev="$rev + uncommitted changes in src/ or Cargo.*"
  fi
  echo "$rev"
}
