#!/usr/bin/env bash
# Optional load comparison (issue 3): the gateway next to ContextForge
# (PyPI mcp-contextforge-gateway), both in proxy-header mode, in front of the
# official "everything" MCP server, in one run on loopback:
#
#   (1) the everything server directly       http://127.0.0.1:P1/mcp
#   (2) mcp-gateway, proxy header            http://127.0.0.1:P2/servers/everything/mcp
#   (3) ContextForge, proxy header           http://127.0.0.1:P3/mcp/
#       with USE_STATEFUL_SESSIONS=true (one upstream session per client session)
#   (4) the same as ContextForge comes (stateless: one upstream session per call)
#
# Same client for all three: wrk with benches/load/contextforge/echo.lua,
# repeated MCP `tools/call` of the echo tool inside sessions opened
# beforehand; every response must be 200 AND carry the echo text.
# Prints req/s, p50, p99 and the ratios, and (unless WRITE_RESULTS=0 or a
# response failed) rewrites the "Optional: ContextForge" section of
# BENCHMARKS.md. Not part of CI, `make test` or `make bench-load`.
#
# Settings (environment), all optional:
#   DURATION=15s CONNECTIONS=16 THREADS=2 ROUNDS=3 WARMUP=3s     (wrk)
#   CF_WORKERS=1        uvicorn workers of the stateless ContextForge (its CLI's
#                       default is 1; the stateful one always has 1, see below)
#   CF_STATELESS=1      also measure ContextForge as it comes (USE_STATEFUL_SESSIONS
#                       false: a new upstream MCP session for every call); 0 = skip
#   QUIET_WAIT=600      seconds (in all) to wait for other load benchmarks
#                       (wrk, loadgen, run.sh) or compilations (rustc) to finish
#   SKIP_BUILD=1        never build target/release/mcp-gateway (default: only if missing)
#   KEEP_TMP=1          keep the work directory (logs, raw wrk outputs)
#   WRITE_RESULTS=0     print only
# Installs (once, reused): ContextForge into a venv and the everything server
# into an npm prefix, both under ${XDG_CACHE_HOME:-~/.cache}/mcp-gateway-bench.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
LOG_TAG=contextforge
FAIL_TAG="CONTEXTFORGE BENCHMARK"
# shellcheck source=benches/load/lib.sh
source "$ROOT/benches/load/lib.sh"
HERE=$ROOT/benches/load/contextforge

overrides=""
for var in DURATION CONNECTIONS THREADS ROUNDS WARMUP CF_WORKERS CF_STATELESS; do
  if [ -n "${!var:-}" ]; then overrides+="$var=${!var} "; fi
done
BENCH_COMMAND="$overrides${BENCH_COMMAND:-benches/load/contextforge.sh}"

DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-3s}
CF_WORKERS=${CF_WORKERS:-1}
CF_STATELESS=${CF_STATELESS:-1}
QUIET_WAIT=${QUIET_WAIT:-600}
WRITE_RESULTS=${WRITE_RESULTS:-1}

CONTEXTFORGE_VERSION=1.0.7
EVERYTHING_VERSION=2026.8.31
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/mcp-gateway-bench
VENV=$CACHE/contextforge-venv
NPM_PREFIX=$CACHE/everything-$EVERYTHING_VERSION
EVERYTHING_JS=$NPM_PREFIX/node_modules/@modelcontextprotocol/server-everything/dist/index.js

CF_ADMIN_EMAIL=admin@example.com
BENCH_USER=bench@example.com
IDENTITY_HEADER=X-Authenticated-User

TARGETS=(direct gateway contextforge)
declare -A NAME URL TOOL SESSIONS PID_OF CTYPE
PIDS=()
WORK=""
OTHERS_SEEN=""
WAITED=0


# ---------------------------------------------------------------- setup ---

ensure_tools() {
  local missing=()
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  install_packages "${missing[@]}"
  PYTHON=""
  local py
  for py in python3.11 python3.12 python3.13 python3; do
    if command -v "$py" >/dev/null 2>&1 &&
      "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      PYTHON=$(command -v "$py")
      break
    fi
  done
  [ -n "$PYTHON" ] || die "ContextForge needs Python >= 3.11"
}

# Idempotent: a venv that already holds the pinned version is reused.
install_contextforge() {
  if [ -x "$VENV/bin/mcpgateway" ] &&
    [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp-contextforge-gateway"))' 2>/dev/null)" = "$CONTEXTFORGE_VERSION" ]; then
    return
  fi
  log "installing mcp-contextforge-gateway==$CONTEXTFORGE_VERSION into $VENV"
  mkdir -p "$CACHE"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q "mcp-contextforge-gateway==$CONTEXTFORGE_VERSION"
}

# Pinned and installed once into its own prefix (rather than `npx -y`, which
# would ask the registry on every run).
install_everything() {
  [ -f "$EVERYTHING_JS" ] && return
  log "installing @modelcontextprotocol/server-everything@$EVERYTHING_VERSION into $NPM_PREFIX"
  mkdir -p "$NPM_PREFIX"
  [ -f "$NPM_PREFIX/package.json" ] || echo '{"name":"mcp-gateway-bench-everything","private":true}' >"$NPM_PREFIX/package.json"
  npm install --prefix "$NPM_PREFIX" --no-audit --no-fund --loglevel=error \
    "@modelcontextprotocol/server-everything@$EVERYTHING_VERSION" >/dev/null
  [ -f "$EVERYTHING_JS" ] || die "npm installed no $EVERYTHING_JS"
}

gateway_binary() {
  local bin=$ROOT/target/release/mcp-gateway
  if [ ! -x "$bin" ]; then
    [ "${SKIP_BUILD:-0}" = 1 ] && die "$bin is missing (SKIP_BUILD=1)"
    log "cargo build --release --bin mcp-gateway (waits if another build holds the lock)"
    cargo build --release --bin mcp-gateway
  fi
  # Others may rebuild target/ during the run: measure one fixed binary, and
  # record what it was built from now.
  GATEWAY_BUILT=$(date -u -r "$bin" '+%Y-%m-%d %H:%M UTC')
  REVISION=$(revision)
  cp "$bin" "$WORK/mcp-gateway"
  GATEWAY=$WORK/mcp-gateway
}




wait_http() {
  local key=$1 url=$2 tries=$3
  for _ in $(seq "$tries"); do
    kill -0 "${PID_OF[$key]}" 2>/dev/null || {
      tail -n 40 "$WORK/$key.log" >&2 || true
      die "$key exited at start-up"
    }
    if curl -s -o /dev/null --max-time 2 "$url"; then return; fi
    sleep 0.5
  done
  tail -n 40 "$WORK/$key.log" >&2 || true
  die "$key does not answer on $url"
}

# ---------------------------------------------------------- the targets ---

start_everything() {
  spawn everything "$WORK/everything.log" env -i PATH="$PATH" HOME="$WORK" PORT="$EVERYTHING_PORT" \
    node "$EVERYTHING_JS" streamableHttp
  # It answers GET /mcp without a session with 400: enough to know it listens.
  wait_http everything "http://127.0.0.1:$EVERYTHING_PORT/mcp" 120
  NAME[direct]="everything server, direct"
  URL[direct]="http://127.0.0.1:$EVERYTHING_PORT/mcp"
  PID_OF[direct]=""
}

start_gateway() {
  cat >"$WORK/gateway.yaml" <<YAML
servers:
  - name: everything
    urls: [http://127.0.0.1:$EVERYTHING_PORT/mcp]
YAML
  spawn gateway "$WORK/gateway.log" env -i PATH="$PATH" HOME="$WORK" \
    HOST=127.0.0.1 PORT="$GATEWAY_PORT" LOG_LEVEL=warn SHUTDOWN_DRAIN_SECONDS=0 \
    ADMIN_ENABLED=false DATABASE_URL="sqlite:///$WORK/registry.db" \
    SESSION_SECRET="$(head -c 32 /dev/urandom | base64)" \
    MCP_CLIENT_AUTH_ENABLED=false TRUST_PROXY_AUTH=true TRUSTED_PROXIES=127.0.0.1/32 \
    PROXY_USER_HEADER="$IDENTITY_HEADER" \
    "$GATEWAY" --config "$WORK/gateway.yaml"
  wait_http gateway "http://127.0.0.1:$GATEWAY_PORT/health" 120
  NAME[gateway]="mcp-gateway, proxy header"
  URL[gateway]="http://127.0.0.1:$GATEWAY_PORT/servers/everything/mcp"
}

secret() { head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 48; }

# ContextForge instance $1 on port $2 with $3 uvicorn workers and extra
# settings $4...: runs from
# its own directory under $WORK with a clean environment, so no .env of the
# repository or of the developer is read and its SQLite database lands there.
# Its settings are kept in $WORK/$1/env.list for create_jwt_token.
start_contextforge() {
  local key=$1 port=$2 nworkers=$3
  shift 3
  mkdir -p "$WORK/$key"
  printf '%s\n' \
    "PATH=$VENV/bin:$PATH" "HOME=$WORK/$key" \
    MCP_CLIENT_AUTH_ENABLED=false TRUST_PROXY_AUTH=true TRUST_PROXY_AUTH_DANGEROUSLY=true \
    "PROXY_USER_HEADER=$IDENTITY_HEADER" REQUIRE_USER_IN_DB=false \
    SSRF_ALLOW_LOCALHOST=true RATE_LIMITING_ENABLED=false \
    "JWT_SECRET_KEY=$(secret)" "AUTH_ENCRYPTION_SECRET=$(secret)" \
    "PLATFORM_ADMIN_EMAIL=$CF_ADMIN_EMAIL" "PLATFORM_ADMIN_PASSWORD=Pa-$(secret)-9!" \
    "DATABASE_URL=sqlite:///$WORK/$key/mcp.db" LOG_LEVEL=WARNING \
    "$@" >"$WORK/$key/env.list"
  local env_list workers=()
  mapfile -t env_list <"$WORK/$key/env.list"
  [ "$nworkers" -gt 1 ] && workers=(--workers "$nworkers")
  spawn "$key" "$WORK/$key.log" env -i -C "$WORK/$key" "${env_list[@]}" \
    "$VENV/bin/mcpgateway" --host 127.0.0.1 --port "$port" "${workers[@]}"
  URL[$key]="http://127.0.0.1:$port/mcp/"
}

# Registers the everything server and the benchmark's user in instance $1.
register_contextforge() {
  local key=$1 base=${URL[$1]%/mcp/} token env_list
  wait_http "$key" "$base/health" 360
  mapfile -t env_list <"$WORK/$key/env.list"
  token=$(env -i -C "$WORK/$key" "${env_list[@]}" "$VENV/bin/python" -m mcpgateway.utils.create_jwt_token \
    -u "$CF_ADMIN_EMAIL" --admin --exp 120 2>>"$WORK/$key.log") ||
    die "create_jwt_token failed: $(tail -n 5 "$WORK/$key.log")"
  python3 "$HERE/mcp_helper.py" register --base "$base" \
    --upstream "http://127.0.0.1:$EVERYTHING_PORT/mcp" --name everything \
    --admin-email "$CF_ADMIN_EMAIL" --user "$BENCH_USER" --header "$IDENTITY_HEADER" --token "$token" ||
    die "registration in $key failed"
}

# One session per wrk thread at each target; checks a call through each.
open_sessions() {
  local key out S_TOOL S_SESSIONS S_CTYPE
  for key in "${TARGETS[@]}"; do
    out=$(python3 "$HERE/mcp_helper.py" sessions --url "${URL[$key]}" \
      --header "$IDENTITY_HEADER: $BENCH_USER" --count "$THREADS" \
      --find-tool echo --message-file "$WORK/message.txt") || die "($key) ${NAME[$key]}: no working session"
    eval "$out"
    TOOL[$key]=$S_TOOL
    SESSIONS[$key]=$S_SESSIONS
    CTYPE[$key]=$S_CTYPE
  done
}

# ------------------------------------------------------------ measuring ---

tree_pids() {
  local pid=$1 child
  echo "$pid"
  for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do tree_pids "$child"; done
}

# utime + stime of a process and its descendants, in clock ticks.
cpu_ticks() {
  local total=0 pid t
  [ -n "$1" ] || {
    echo 0
    return
  }
  for pid in $(tree_pids "$1"); do
    t=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
    total=$((total + ${t:-0}))
  done
  echo "$total"
}

# Someone else's load benchmark, or a compilation (a release build takes
# both cores for minutes).
other_benchmarks() {
  pgrep -a -f '(^|/)(wrk|loadgen|rustc)( |$)|benches/load/run\.sh' 2>/dev/null || true
}

# Waits (up to QUIET_WAIT seconds in all) while someone else's load
# benchmark runs; measures anyway afterwards, and says so.
wait_quiet() {
  local others
  others=$(other_benchmarks)
  [ -z "$others" ] && return
  log "another load benchmark or a compilation is running; waiting (budget ${QUIET_LEFT}s):"
  printf '%s\n' "$others" | cut -c1-160 >&2
  while [ -n "$others" ] && [ "$QUIET_LEFT" -gt 0 ]; do
    sleep 10
    QUIET_LEFT=$((QUIET_LEFT - 10))
    WAITED=$((WAITED + 10))
    others=$(other_benchmarks)
  done
  if [ -n "$others" ]; then
    log "still running after the wait budget; measuring anyway"
    OTHERS_SEEN="yes: measured while another load benchmark or compilation ran ($(printf '%s' "$others" | head -n 1 | cut -c1-80)…)"
  else
    log "quiet again"
  fi
}

# A build that just ended leaves the 1-minute load average high for a while;
# let it decay (up to 60 s) so "load before" describes the machine at rest.
settle() {
  local waited=0
  while [ "$waited" -lt 60 ] && awk '{ exit !($1 >= 1.0) }' /proc/loadavg; do
    sleep 5
    waited=$((waited + 5))
  done
}

run_wrk() {
  local key=$1 duration=$2 out=$3
  BENCH_TOOL=${TOOL[$key]} BENCH_SESSIONS=${SESSIONS[$key]} BENCH_MESSAGE_FILE=$WORK/message.txt \
    BENCH_HEADERS="$IDENTITY_HEADER: $BENCH_USER" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --timeout 10s \
    -s "$HERE/echo.lua" "${URL[$key]}" >"$out" 2>&1 || die "wrk failed on $key: $(cat "$out")"
}

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

round_order() {
  local round=$1 n=${#TARGETS[@]} i
  for ((i = 0; i < n; i++)); do printf '%s ' "${TARGETS[$(((i + round - 1) % n))]}"; done
}

measure() {
  local key=$1 round=$2
  local out=$WORK/wrk-$key-$round.txt load t0 t1 p0 p1 u0 u1 line
  wait_quiet
  load=$(cut -d' ' -f1 /proc/loadavg)
  p0=$(cpu_ticks "${PID_OF[$key]}")
  u0=$(cpu_ticks "${PID_OF[everything]}")
  t0=$(date +%s.%N)
  run_wrk "$key" "$DURATION" "$out"
  t1=$(date +%s.%N)
  p1=$(cpu_ticks "${PID_OF[$key]}")
  u1=$(cpu_ticks "${PID_OF[everything]}")
  line=$(grep '^BENCH ' "$out") || die "no result line from wrk on $key: $(cat "$out")"
  local pcpu ucpu
  pcpu=$(awk -v d=$((p1 - p0)) -v hz="$HZ" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", d / hz / (b - a) * 100 }')
  ucpu=$(awk -v d=$((u1 - u0)) -v hz="$HZ" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", d / hz / (b - a) * 100 }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$key" "$round" \
    "$(field rps "$line")" "$(field p50_us "$line")" "$(field p99_us "$line")" \
    "$(field requests "$line")" "$(field non200 "$line")" "$(field badbody "$line")" \
    "$(field errors "$line")" "$pcpu" "$ucpu" "$load" >>"$WORK/results.tsv"
  log "round $round $key: $(field rps "$line") req/s, p50 $(field p50_us "$line") µs, p99 $(field p99_us "$line") µs," \
    "failed $(field non200 "$line") non-200 / $(field badbody "$line") no echo / $(field errors "$line") socket;" \
    "proxy CPU $pcpu %, upstream CPU $ucpu %, load $load"
  if grep -q '^BENCH_FIRST_BAD' "$out"; then log "$key first bad response: $(grep '^BENCH_FIRST_BAD' "$out" | cut -c1-300)"; fi
}


# ---------------------------------------------------------------- main ---

main() {
  ensure_tools
  install_contextforge
  install_everything
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/mcp-bench-cf.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  gateway_binary
  HZ=$(getconf CLK_TCK)
  QUIET_LEFT=$QUIET_WAIT
  # The echo message: a per-run marker, so only a real reply can carry it.
  python3 -c 'import secrets; m = "cf-bench-" + secrets.token_hex(8) + "-"; print(m + "x" * (900 - len(m)))' >"$WORK/message.txt"

  read -r EVERYTHING_PORT GATEWAY_PORT CF_PORT CF_STATELESS_PORT < <(free_ports 4)
  log "work dir $WORK; everything :$EVERYTHING_PORT, mcp-gateway :$GATEWAY_PORT, ContextForge :$CF_PORT (stateful), :$CF_STATELESS_PORT (stateless)"
  start_everything
  start_gateway
  log "starting ContextForge $CONTEXTFORGE_VERSION; a first start migrates a fresh database (~20 s)"
  # Stateful sessions live in one worker's memory: with more workers a
  # session's next request may reach another one ("Session not found") unless
  # ContextForge's session affinity (Redis) is set up, which this does not do.
  start_contextforge contextforge "$CF_PORT" 1 USE_STATEFUL_SESSIONS=true
  NAME[contextforge]="ContextForge, proxy header, stateful sessions"
  if [ "$CF_STATELESS" = 1 ]; then
    start_contextforge contextforge_stateless "$CF_STATELESS_PORT" "$CF_WORKERS"
    NAME[contextforge_stateless]="ContextForge, proxy header, default (stateless)"
    TARGETS+=(contextforge_stateless)
  fi
  register_contextforge contextforge
  if [ "$CF_STATELESS" = 1 ]; then register_contextforge contextforge_stateless; fi
  open_sessions
  local key
  for key in "${TARGETS[@]}"; do
    log "($key) ${NAME[$key]}: tool ${TOOL[$key]}, reply ${CTYPE[$key]}, sessions ${SESSIONS[$key]:0:60}"
  done

  wait_quiet
  settle
  local load_before started
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  started=$(date -u '+%Y-%m-%d %H:%M UTC')
  log "load average before measuring: $load_before (nproc $(nproc))"
  log "warm-up: wrk -t$THREADS -c$CONNECTIONS -d$WARMUP per target"
  for key in "${TARGETS[@]}"; do
    run_wrk "$key" "$WARMUP" "$WORK/warmup-$key.txt"
    grep '^BENCH' "$WORK/warmup-$key.txt" | sed "s/^/[warm-up $key] /" >&2
  done
  local round
  for ((round = 1; round <= ROUNDS; round++)); do
    for key in $(round_order "$round"); do measure "$key" "$round"; done
  done

  {
    echo "command=$BENCH_COMMAND"
    echo "date=$started"
    echo "revision=$REVISION (when the binary was copied)"
    echo "load_before=$load_before"
    echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "wrk=wrk -t$THREADS -c$CONNECTIONS -d$DURATION --timeout 10s (keep-alive), warm-up $WARMUP per target, $ROUNDS round(s)"
    echo "cf_version=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp-contextforge-gateway"))')"
    echo "cf_workers=$CF_WORKERS"
    echo "cf_stateless=$CF_STATELESS"
    echo "python=$("$VENV/bin/python" -c 'import platform; print(platform.python_version())')"
    echo "everything_version=$EVERYTHING_VERSION"
    echo "node=$(node --version)"
    echo "gateway_version=$("$GATEWAY" --version | awk '{print $2}') (binary built $GATEWAY_BUILT)"
    echo "wrk_version=$(wrk --version 2>&1 | head -n 1 | awk '{print $1, $2}')"
    echo "others=${OTHERS_SEEN:-none running at the start of any measurement (waited ${WAITED}s in all for others to finish)}"
  } >"$WORK/meta.env"

  local write=()
  [ "$WRITE_RESULTS" = 1 ] && write=(--write "$ROOT/BENCHMARKS.md")
  python3 "$HERE/mcp_helper.py" report "$WORK" "${write[@]}"
}

main "$@"
