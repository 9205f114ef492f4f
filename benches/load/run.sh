#!/usr/bin/env bash
# Load benchmark of the gateway (issue 3). One run, on loopback, against a
# fast nginx upstream that always answers the same JSON-RPC reply:
#
#   (1) the upstream directly             (4) the gateway, proxy-header mode
#   (2) nginx as a plain reverse proxy    (5) the gateway, HS256 JWT auth
#   (3) a minimal Pingora pass-through    (6) the gateway, header passthrough on
#   (7) (3) plus the four header edits the gateway must make (Host, X-Forwarded-*)
#
# (1)-(3) are yardsticks: the gateway's cost is only meaningful next to the
# same load through nginx and through Pingora doing nothing.
#
# Modes (MODE=…): full (default: throughput, then rate, then RSS, then
# streams, then federation; writes BENCHMARKS.md except the streams table), throughput, rate, rss, instructions (user-space
# instructions per request of (3)-(6) under callgrind: repeatable where req/s
# are noisy), smoke (everything, tiny and short; only proves the benchmark
# still runs), streams (memory per open MCP event stream and the delay added
# to each event, issue 10: the demo server directly, nginx, the bare Pingora
# pass-through and the gateway, each holding STREAMS open GET streams; prints
# its own report), federation (issue 9, benches/load/federation.sh: one
# tools/call direct, through the plain route, /tools/invoke, a virtual
# server and /mcp; GET /tools at 1,000 servers x 100 tools and the catalog's
# memory; prints its own report and, with WRITE_RESULTS=1, writes its section
# of BENCHMARKS.md). Settings, all overridable:
#   DURATION=10s CONNECTIONS=64 THREADS=2 ROUNDS=3 WARMUP=2s      (wrk)
#   RATE=2000 RATE_DURATION=10s RATE_CONNECTIONS=32               (loadgen)
#   IDLE_CONNECTIONS=10000                                         (RSS)
#   STREAMS=1000 STREAM_SETTLE=5 STREAM_MEASURE=10                 (streams)
#   STREAM_BASELINE=1000  (streams: a first batch held open before the
#     measured one; per open stream is the measured batch's RSS growth, so
#     heap the process freed before, reused by the first streams, does not
#     pass for their cost; 0 measures from the idle RSS instead)
#   STREAM_KIND=get|post|sse  (streams: the session's GET stream, a POST
#     tools/call answered as an event stream of progress notifications, or
#     legacy /sse streams, which carry no timed events: memory only)
#   FED_SERVERS=1000 FED_TOOLS=100 FED_TARGETS="a b c d e"          (federation;
#     COMPARE_CONTEXTFORGE=1 adds ContextForge's /rpc, see federation.sh)
#   SKIP_BUILD=1  KEEP_TMP=1  WRITE_RESULTS=0|1  SETTLE_SECONDS=60
#   BIN_DIR=target/debug (with SKIP_BUILD=1: binaries built elsewhere than
#     target/release); TARGET_STREAMS="direct nginx pingora gateway" (streams;
#     add "before" with GATEWAY_BEFORE=path to measure another gateway build,
#     e.g. the revision before a change, in the same run)
#   TARGETS="1 2 3 7 4 5 6"  the targets measured, in this order; (8) is the
#     gateway in proxy-header mode with the access log on (LOG_LEVEL=info,
#     stdout to its log file, as journald would take it) next to (4), whose
#     LOG_LEVEL=warn leaves it off: MODE=throughput TARGETS="4 8"; (9) is (4)
#     run by another gateway build, GATEWAY_BEFORE=path (e.g. the revision
#     before a change), in the same run: MODE=throughput TARGETS="4 9"
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
LOG_TAG=bench
FAIL_TAG="BENCHMARK"
# shellcheck source=benches/load/lib.sh
source "$ROOT/benches/load/lib.sh"
HERE=$ROOT/benches/load

# What was asked for, as BENCHMARKS.md records it.
overrides=""
for var in MODE TARGETS TARGET_STREAMS BIN_DIR GATEWAY_BEFORE DURATION CONNECTIONS THREADS ROUNDS WARMUP RATE RATE_DURATION RATE_CONNECTIONS IDLE_CONNECTIONS STREAMS STREAM_BASELINE STREAM_SETTLE STREAM_MEASURE STREAM_KIND FED_SERVERS FED_TOOLS FED_TARGETS FED_PARTS FED_DURATION FED_WARMUP COMPARE_CONTEXTFORGE; do
  if [ -n "${!var:-}" ]; then overrides+="$var=${!var} "; fi
done
BENCH_COMMAND="$overrides${BENCH_COMMAND:-benches/load/run.sh}"

MODE=${MODE:-full}
case "$MODE" in
  smoke)
    # Small enough for CI; no figure of a smoke run means anything.
    DURATION=${DURATION:-2s} CONNECTIONS=${CONNECTIONS:-4} ROUNDS=${ROUNDS:-1}
    WARMUP=${WARMUP:-1s} RATE=${RATE:-200} RATE_DURATION=${RATE_DURATION:-2s}
    RATE_CONNECTIONS=${RATE_CONNECTIONS:-4} IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-200}
    SETTLE_SECONDS=${SETTLE_SECONDS:-0}
    STREAMS=${STREAMS:-20} STREAM_SETTLE=${STREAM_SETTLE:-1} STREAM_MEASURE=${STREAM_MEASURE:-2}
    STREAM_BASELINE=${STREAM_BASELINE:-20}
    FED_SERVERS=${FED_SERVERS:-20} FED_TOOLS=${FED_TOOLS:-10}
    FED_DURATION=${FED_DURATION:-2s} FED_WARMUP=${FED_WARMUP:-0}
    ;;
  instructions)
    # Instructions are counted, not timed: a few connections are enough and
    # the machine's other work does not change the count.
    DURATION=${DURATION:-20s} CONNECTIONS=${CONNECTIONS:-4} THREADS=${THREADS:-1}
    WARMUP=${WARMUP:-5s} SETTLE_SECONDS=${SETTLE_SECONDS:-0}
    ;;
  full | throughput | rate | rss | streams | federation) ;;
  *)
    echo "run.sh: MODE must be full, throughput, rate, rss, instructions, streams, federation or smoke (got '$MODE')" >&2
    exit 2
    ;;
esac
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2s}
RATE=${RATE:-2000}
RATE_DURATION=${RATE_DURATION:-10s}
RATE_CONNECTIONS=${RATE_CONNECTIONS:-32}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
SETTLE_SECONDS=${SETTLE_SECONDS:-60}
STREAMS=${STREAMS:-1000}
STREAM_SETTLE=${STREAM_SETTLE:-5}
STREAM_MEASURE=${STREAM_MEASURE:-10}
STREAM_BASELINE=${STREAM_BASELINE:-1000}
STREAM_KIND=${STREAM_KIND:-get}
case "$STREAM_KIND" in
  get | post) STREAM_PATH=mcp ;;
  sse) STREAM_PATH=sse ;;
  *) echo "run.sh: STREAM_KIND must be get, post or sse (got '$STREAM_KIND')" >&2; exit 2 ;;
esac
# Only a complete run may replace the published figures.
if [ "$MODE" = full ]; then WRITE_RESULTS=${WRITE_RESULTS:-1}; else WRITE_RESULTS=${WRITE_RESULTS:-0}; fi

read -r -a TARGETS <<<"${TARGETS:-1 2 3 7 4 5 6}"
# After the mode's defaults, which its own defaults must not override.
# shellcheck source=benches/load/federation.sh
source "$HERE/federation.sh"
declare -A NAME URL HEADERS PID_OF
PIDS=()
WORK=""


# ---------------------------------------------------------------- setup ---

# The benchmark drives real programs; install the missing ones rather than
# fail half-way through.
ensure_tools() {
  local missing=()
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  command -v ss >/dev/null 2>&1 || missing+=(iproute2)
  if [ "$MODE" = instructions ]; then
    command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
  fi
  install_packages "${missing[@]}"
}

nginx_bin() { command -v nginx 2>/dev/null || echo /usr/sbin/nginx; }

# 10,000 idle connections need 10,000 descriptors in the gateway and as many
# in the client that holds them open; an open stream needs two in a proxy
# (client side and upstream side). Every process inherits this shell's limit.
raise_fd_limit() {
  local need=$((IDLE_CONNECTIONS + 4096))
  local streams=$((STREAMS + STREAM_BASELINE))
  [ $((2 * streams + 4096)) -gt "$need" ] && need=$((2 * streams + 4096))
  if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$need" ]; then
    ulimit -Hn "$need" 2>/dev/null || true
  fi
  ulimit -Sn "$(ulimit -Hn)"
  local have
  have=$(ulimit -n)
  if [ "$have" != unlimited ] && [ "$have" -lt "$need" ]; then
    IDLE_CONNECTIONS=$((have - 4096))
    STREAMS=$(((have - 4096) / 2 - STREAM_BASELINE))
    log "open-file limit is $have: holding only $IDLE_CONNECTIONS idle connections, $STREAMS streams"
  fi
}

build() {
  if [ "${SKIP_BUILD:-0}" = 1 ]; then
    log "SKIP_BUILD=1: using the binaries in ${BIN_DIR:-target/release}"
  else
    log "cargo build --release --bins --examples (waits if another build holds the lock)"
    cargo build --release --bins --examples
  fi
  local bins
  bins=$(realpath "${BIN_DIR:-$ROOT/target/release}")
  GATEWAY=$bins/mcp-gateway
  PASSTHROUGH=$bins/examples/passthrough
  LOADGEN=$bins/examples/loadgen
  STREAMS_CLIENT=$bins/examples/streams
  DEMO=$bins/mcp-demo-server
  local bin
  for bin in "$GATEWAY" "$PASSTHROUGH" "$LOADGEN" "$STREAMS_CLIENT" "$DEMO"; do
    [ -x "$bin" ] || die "$bin is missing (build failed?)"
  done
}


# The ~1 KiB JSON-RPC tools/call every client sends.
write_body() {
  python3 - >"$WORK/body.json" <<'PY'
import sys
head = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"'
tail = '"}}}'
sys.stdout.write(head + "x" * (1024 - len(head) - len(tail)) + tail)
PY
}

# A valid HS256 token (sub + exp), made with the standard library only.
make_jwt() {
  python3 - "$1" <<'PY'
import base64, hashlib, hmac, json, sys, time
def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
def part(obj):
    return b64(json.dumps(obj, separators=(",", ":")).encode())
signing_input = part({"alg": "HS256", "typ": "JWT"}) + "." + part(
    {"sub": "bench@example.com", "exp": int(time.time()) + 86400})
mac = hmac.new(sys.argv[1].encode(), signing_input.encode(), hashlib.sha256).digest()
print(signing_input + "." + b64(mac))
PY
}



# ----------------------------------------------------------- the targets ---

# The reply every target ends in; its marker proves a 200 came from upstream.
UPSTREAM_REPLY='{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"bench-upstream"}],"isError":false}}'

# nginx without root: its own prefix, pid, logs and temp paths in $WORK.
nginx_common() {
  local name=$1
  cat <<CONF
daemon off;
pid $WORK/$name.pid;
error_log $WORK/$name-error.log warn;
events { worker_connections 16384; }
CONF
}

nginx_http_common() {
  local name=$1
  cat <<CONF
  access_log off;
  client_body_temp_path $WORK/$name-tmp/body;
  proxy_temp_path $WORK/$name-tmp/proxy;
  fastcgi_temp_path $WORK/$name-tmp/fastcgi;
  uwsgi_temp_path $WORK/$name-tmp/uwsgi;
  scgi_temp_path $WORK/$name-tmp/scgi;
  # nginx closes a keep-alive connection after 1000 requests by default;
  # the clients and proxies here would reconnect mid-measurement.
  keepalive_requests 1000000;
  keepalive_timeout 75s;
CONF
}

start_nginx() {
  local name=$1
  mkdir -p "$WORK/$name-tmp"
  spawn "$name" "$WORK/$name.log" "$(nginx_bin)" -p "$WORK" -c "$WORK/$name.conf" -e "$WORK/$name-error.log"
}

# The upstream: one worker, like a small MCP server; it answers before the
# proxies in front of it run out of CPU.
start_upstream() {
  {
    echo "worker_processes 1;"
    nginx_common upstream
    echo "http {"
    nginx_http_common upstream
    cat <<CONF
  server {
    listen 127.0.0.1:$UPSTREAM_PORT;
    location / {
      default_type application/json;
      return 200 '$UPSTREAM_REPLY';
    }
  }
}
CONF
  } >"$WORK/upstream.conf"
  start_nginx upstream
  NAME[1]="nginx upstream (direct)"
  URL[1]="http://127.0.0.1:$UPSTREAM_PORT/mcp"
  HEADERS[1]="X-Authenticated-User: bench@example.com"
}

# A plain nginx reverse proxy with a pool of upstream keep-alive connections.
start_nginx_proxy() {
  {
    echo "worker_processes 2;"
    nginx_common proxy
    echo "http {"
    nginx_http_common proxy
    cat <<CONF
  upstream bench {
    server 127.0.0.1:$UPSTREAM_PORT;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$NGINX_PROXY_PORT;
    location / {
      proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
  } >"$WORK/proxy.conf"
  start_nginx proxy
  NAME[2]="nginx reverse proxy"
  URL[2]="http://127.0.0.1:$NGINX_PROXY_PORT/mcp"
  HEADERS[2]="X-Authenticated-User: bench@example.com"
}

# In MODE=instructions the Pingora targets run under callgrind with counting
# off until `instructions` switches it on around the measured load.
counted() {
  if [ "$MODE" = instructions ]; then
    echo valgrind --tool=callgrind --instr-atstart=no --separate-threads=no \
      --dump-instr=no "--callgrind-out-file=$WORK/callgrind-$1.out"
  fi
}

# (7): the pass-through making the four header edits every gateway request
# needs (Host, X-Forwarded-For/-Proto/-Host): what they cost in Pingora itself.
start_passthrough_forwarded() {
  # shellcheck disable=SC2046 # counted prints words on purpose
  spawn 7 "$WORK/passthrough-forwarded.log" env -i PATH="$PATH" RUST_LOG=warn HOST=127.0.0.1 \
    $(counted 7) "$PASSTHROUGH" --listen "127.0.0.1:$PASSTHROUGH_FORWARDED_PORT" \
    --upstream "127.0.0.1:$UPSTREAM_PORT" --forwarded-headers
  NAME[7]="Pingora pass-through + Host, X-Forwarded-*"
  URL[7]="http://127.0.0.1:$PASSTHROUGH_FORWARDED_PORT/mcp"
  HEADERS[7]="X-Authenticated-User: bench@example.com"
}

start_passthrough() {
  # shellcheck disable=SC2046 # counted prints words on purpose
  spawn passthrough "$WORK/passthrough.log" env -i PATH="$PATH" RUST_LOG=warn HOST=127.0.0.1 \
    $(counted 3) "$PASSTHROUGH" --listen "127.0.0.1:$PASSTHROUGH_PORT" --upstream "127.0.0.1:$UPSTREAM_PORT"
  NAME[3]="Pingora pass-through"
  URL[3]="http://127.0.0.1:$PASSTHROUGH_PORT/mcp"
  HEADERS[3]="X-Authenticated-User: bench@example.com"
}

# The gateway runs from $WORK with a clean environment: a developer's .env in
# the repository or an exported RUST_LOG=debug would change what is measured.
start_gateway() {
  local key=$1 port=$2
  shift 2
  # The admin service is off: its one default port (4445) would be shared
  # by every gateway of the run. Each gateway its own registry file (four
  # slashes: an absolute path), not a ./mcp.db shared through $HOME.
  # shellcheck disable=SC2046 # counted prints words on purpose
  spawn "$key" "$WORK/$key.log" env -i PATH="$PATH" HOME="$WORK" \
    HOST=127.0.0.1 PORT="$port" LOG_LEVEL=warn SHUTDOWN_DRAIN_SECONDS=0 \
    ADMIN_ENABLED=false DATABASE_URL="sqlite:///$WORK/registry-$key.db" \
    SESSION_SECRET="$SESSION_SECRET" "$@" $(counted "$key") "$GATEWAY" --config "${GATEWAY_CONFIG:-$WORK/gateway.yaml}"
}

write_gateway_config() {
  cat >"$WORK/gateway.yaml" <<YAML
servers:
  - name: bench
    urls: [http://127.0.0.1:$UPSTREAM_PORT/mcp]
YAML
}

PROXY_MODE=(MCP_CLIENT_AUTH_ENABLED=false TRUST_PROXY_AUTH=true TRUSTED_PROXIES=127.0.0.1/32)

start_gateway_proxy_mode() {
  start_gateway 4 "$GATEWAY_PROXY_PORT" "${PROXY_MODE[@]}"
  NAME[4]="gateway, proxy header"
  URL[4]="http://127.0.0.1:$GATEWAY_PROXY_PORT/servers/bench/mcp"
  HEADERS[4]="X-Authenticated-User: bench@example.com"
}

# (8): (4) with the access log on, one line per request to its log file.
start_gateway_access_log() {
  start_gateway 8 "$GATEWAY_ACCESS_LOG_PORT" "${PROXY_MODE[@]}" LOG_LEVEL=info ACCESS_LOG=true
  NAME[8]="gateway, proxy header + access log"
  URL[8]="http://127.0.0.1:$GATEWAY_ACCESS_LOG_PORT/servers/bench/mcp"
  HEADERS[8]="X-Authenticated-User: bench@example.com"
}

# (9): (4) run by the gateway binary GATEWAY_BEFORE.
start_gateway_before() {
  [ -x "${GATEWAY_BEFORE:-}" ] || die "TARGETS has 9: set GATEWAY_BEFORE to a gateway binary"
  GATEWAY=$GATEWAY_BEFORE start_gateway 9 "$GATEWAY_BEFORE_PORT" "${PROXY_MODE[@]}"
  NAME[9]="gateway before (GATEWAY_BEFORE), proxy header"
  URL[9]="http://127.0.0.1:$GATEWAY_BEFORE_PORT/servers/bench/mcp"
  HEADERS[9]="X-Authenticated-User: bench@example.com"
}

start_gateway_jwt() {
  # 30 random bytes, base64: a 40-byte key.
  local secret token
  secret=$(head -c 30 /dev/urandom | base64)
  token=$(make_jwt "$secret")
  start_gateway 5 "$GATEWAY_JWT_PORT" MCP_CLIENT_AUTH_ENABLED=true TRUST_PROXY_AUTH=false \
    JWT_SECRET_KEY="$secret"
  NAME[5]="gateway, JWT HS256"
  URL[5]="http://127.0.0.1:$GATEWAY_JWT_PORT/servers/bench/mcp"
  HEADERS[5]="Authorization: Bearer $token"
}

start_gateway_passthrough_headers() {
  start_gateway 6 "$GATEWAY_PASSTHROUGH_PORT" "${PROXY_MODE[@]}" \
    ENABLE_HEADER_PASSTHROUGH=true DEFAULT_PASSTHROUGH_HEADERS='["X-Tenant-Id"]'
  NAME[6]="gateway, proxy + header passthrough"
  URL[6]="http://127.0.0.1:$GATEWAY_PASSTHROUGH_PORT/servers/bench/mcp"
  HEADERS[6]=$'X-Authenticated-User: bench@example.com\nX-Tenant-Id: acme\nX-Upstream-Authorization: Bearer x'
}

# Waits until a target serves, or shows why it died.
wait_until_serving() {
  local key=$1 url=$2
  for _ in $(seq 600); do
    if ! kill -0 "${PID_OF[$key]}" 2>/dev/null; then
      cat "$WORK/$key"*.log >&2 || true
      die "target $key exited at start-up"
    fi
    if curl -s -o /dev/null --max-time 1 "$url"; then return; fi
    sleep 0.1
  done
  die "target $key does not answer on $url"
}

# A 401 or 404 is answered faster than a proxied call: make sure every
# target really reaches the upstream before timing anything.
check_target() {
  local id=$1 args=() line code body
  while IFS= read -r line; do args+=(-H "$line"); done <<<"${HEADERS[$id]}"
  body=$(curl -s --max-time 5 -o - -w '\n%{http_code}' -X POST "${URL[$id]}" \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    "${args[@]}" --data-binary "@$WORK/body.json") || die "($id) ${NAME[$id]}: request failed"
  code=${body##*$'\n'}
  [ "$code" = 200 ] || die "($id) ${NAME[$id]} answered $code: ${body%$'\n'*}"
  case "$body" in
    *bench-upstream*) ;;
    *) die "($id) ${NAME[$id]} answered 200 without the upstream's reply: ${body%$'\n'*}" ;;
  esac
  log "($id) ${NAME[$id]}: 200 from the upstream"
}

start_targets() {
  read -r UPSTREAM_PORT NGINX_PROXY_PORT PASSTHROUGH_PORT GATEWAY_PROXY_PORT \
    GATEWAY_JWT_PORT GATEWAY_PASSTHROUGH_PORT RSS_PORT RSS_PASSTHROUGH_PORT \
    PASSTHROUGH_FORWARDED_PORT GATEWAY_ACCESS_LOG_PORT GATEWAY_BEFORE_PORT < <(free_ports 11)
  write_gateway_config
  start_upstream
  wait_until_serving upstream "http://127.0.0.1:$UPSTREAM_PORT/"
  start_nginx_proxy
  start_passthrough
  start_gateway_proxy_mode
  start_gateway_jwt
  start_gateway_passthrough_headers
  wait_until_serving proxy "http://127.0.0.1:$NGINX_PROXY_PORT/"
  wait_until_serving passthrough "http://127.0.0.1:$PASSTHROUGH_PORT/"
  local id
  for id in 4 5 6; do wait_until_serving "$id" "${URL[$id]%/servers/*}/health"; done
  if [[ " ${TARGETS[*]} " == *" 8 "* ]]; then
    start_gateway_access_log
    wait_until_serving 8 "${URL[8]%/servers/*}/health"
  fi
  if [[ " ${TARGETS[*]} " == *" 9 "* ]]; then
    start_gateway_before
    wait_until_serving 9 "${URL[9]%/servers/*}/health"
  fi
  start_passthrough_forwarded
  wait_until_serving 7 "http://127.0.0.1:$PASSTHROUGH_FORWARDED_PORT/"
  for id in "${TARGETS[@]}"; do check_target "$id"; done
}

# ------------------------------------------------------------ measuring ---

# Round r measures the targets starting at a different one, so a slow
# stretch of the machine does not always hit the same target.
round_order() {
  local round=$1 n=${#TARGETS[@]} i
  for ((i = 0; i < n; i++)); do
    printf '%s ' "${TARGETS[$(((i + round - 1) % n))]}"
  done
}

run_wrk() {
  local id=$1 duration=$2 out=$3
  BENCH_HEADERS=${HEADERS[$id]} BENCH_BODY_FILE=$WORK/body.json \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --timeout 5s \
    -s "$HERE/bench.lua" "${URL[$id]}" >"$out" 2>&1 || die "wrk failed on ($id): $(cat "$out")"
}

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

throughput() {
  log "throughput: wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS round(s), warm-up $WARMUP per target"
  local id round line out
  for id in "${TARGETS[@]}"; do run_wrk "$id" "$WARMUP" "$WORK/warmup-$id.txt"; done
  for ((round = 1; round <= ROUNDS; round++)); do
    for id in $(round_order "$round"); do
      sample_load
      out=$WORK/wrk-$id-$round.txt
      run_wrk "$id" "$DURATION" "$out"
      line=$(grep '^BENCH ' "$out") || die "no result line from wrk on ($id): $(cat "$out")"
      if [ "$(field non200 "$line")" != 0 ] || [ "$(field errors "$line")" != 0 ]; then
        cat "$out" >&2
        die "($id) ${NAME[$id]}: $(field non200 "$line") non-200 (first: $(field first_non200 "$line")), $(field errors "$line") socket errors"
      fi
      printf '%s\t%s\t%s\t%s\t%s\n' "$id" "$round" "$(field rps "$line")" \
        "$(field p50_us "$line")" "$(field p99_us "$line")" >>"$WORK/throughput.tsv"
      log "round $round ($id) ${NAME[$id]}: $(field rps "$line") req/s, p50 $(field p50_us "$line") µs, p99 $(field p99_us "$line") µs"
    done
  done
}

run_loadgen() {
  local id=$1 args=() line
  while IFS= read -r line; do args+=(-H "$line"); done <<<"${HEADERS[$id]}"
  args+=(-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream')
  "$LOADGEN" --url "${URL[$id]}" --rate "$RATE" --duration "$RATE_DURATION" --warmup 1s \
    --connections "$RATE_CONNECTIONS" --body-file "$WORK/body.json" --label "$id" "${args[@]}"
}

rate() {
  log "rate: $RATE req/s for $RATE_DURATION over $RATE_CONNECTIONS connections, $ROUNDS round(s)"
  local id round line
  for ((round = 1; round <= ROUNDS; round++)); do
    for id in $(round_order "$round"); do
      sample_load
      line=$(run_loadgen "$id") || die "loadgen failed on ($id) ${NAME[$id]}"
      if ! grep -q '"non200":0,' <<<"$line" || ! grep -q '"errors":0,' <<<"$line"; then
        die "($id) ${NAME[$id]}: $line"
      fi
      printf '%s\n' "$line" >>"$WORK/rate.jsonl"
      log "round $round ($id) ${NAME[$id]}: $line"
    done
  done
}

vmrss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
vmhwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# RSS of a freshly started target ($1, listening on port $2) idle, then
# holding IDLE_CONNECTIONS idle keep-alive connections that each completed one
# request (options for idle_conns.py follow). Writes $1_* lines to rss.env.
idle_rss() {
  local key=$1 port=$2 pid=${PID_OF[$1]} holder=$WORK/$1-holder.json established
  shift 2
  sleep 2
  echo "${key}_idle_kb=$(vmrss_kb "$pid")" >>"$WORK/rss.env"
  spawn "$key-holder" "$holder" python3 "$HERE/idle_conns.py" --port "$port" \
    --count "$IDLE_CONNECTIONS" --hold 300 "$@"
  for _ in $(seq 1200); do
    [ -s "$holder" ] && break
    kill -0 "${PID_OF[$key-holder]}" 2>/dev/null || die "idle-connection holder died: $(cat "$holder")"
    sleep 0.1
  done
  [ -s "$holder" ] || die "idle connections to $key were not all open after 120 s"
  # Let the target settle (buffers of the last requests freed) before reading.
  sleep 2
  established=$(ss -Htn state established "( sport = :$port )" | wc -l)
  {
    echo "${key}_conns_kb=$(vmrss_kb "$pid")"
    echo "${key}_conns_hwm_kb=$(vmhwm_kb "$pid")"
    echo "${key}_established=$established"
    echo "${key}_holder=$(head -n 1 "$holder")"
  } >>"$WORK/rss.env"
  grep -q '"failed": 0' "$holder" || die "idle connections to $key: $(cat "$holder")"
  # Free both sides' descriptors before the next measurement.
  kill -TERM "${PID_OF[$key-holder]}" "$pid" 2>/dev/null || true
  wait "${PID_OF[$key-holder]}" "$pid" 2>/dev/null || true
}

# User-space instructions per request of the Pingora targets, counted by
# callgrind around a fixed load: the gateway's own cost next to the bare
# pass-through's, repeatable to a fraction of a percent on a busy machine
# where req/s move by several. Kernel time (syscalls) is not in it.
instructions() {
  log "instructions: callgrind, wrk -t$THREADS -c$CONNECTIONS -d$DURATION per target"
  local id key pid out dump line
  for id in "${TARGETS[@]}"; do
    case "$id" in 1 | 2) continue ;; esac # not Pingora: no callgrind
    key=$id
    [ "$id" = 3 ] && key=passthrough
    pid=${PID_OF[$key]}
    run_wrk "$id" "$WARMUP" "$WORK/warmup-$id.txt"
    HOST=127.0.0.1 callgrind_control -i on "$pid" >/dev/null 2>&1 || die "callgrind_control cannot reach ($id)"
    out=$WORK/instructions-$id.txt
    run_wrk "$id" "$DURATION" "$out"
    HOST=127.0.0.1 callgrind_control -i off "$pid" >/dev/null 2>&1
    HOST=127.0.0.1 callgrind_control -d "$pid" >/dev/null 2>&1
    dump=$WORK/callgrind-$id.out.1
    for _ in $(seq 100); do grep -q '^totals:' "$dump" 2>/dev/null && break; sleep 0.1; done
    line=$(grep '^BENCH ' "$out") || die "($id): no result line from wrk: $(cat "$out")"
    case "$line" in
      *" non200=0 "*" errors=0"*) ;;
      *) die "($id) ${NAME[$id]}: $line" ;;
    esac
    python3 - "$id" "$dump" "$line" >>"$WORK/instructions.jsonl" <<'PY'
import json, re, sys
tid, dump, line = sys.argv[1:]
total = next(int(l.split()[1]) for l in open(dump) if l.startswith("totals:"))
requests = int(re.search(r"requests=(\d+)", line).group(1))
print(json.dumps({"id": tid, "requests": requests, "ir": total}))
PY
    log "($id) ${NAME[$id]}: $(tail -n 1 "$WORK/instructions.jsonl")"
  done
}

# Fresh processes, so the figures do not depend on what ran before; the
# pass-through shows what Pingora itself costs per connection.
rss() {
  log "RSS: fresh gateway and pass-through, idle, then $IDLE_CONNECTIONS idle keep-alive connections each"
  if [ -n "${PID_OF[4]:-}" ]; then
    echo "after_load_kb=$(vmrss_kb "${PID_OF[4]}")" >>"$WORK/rss.env"
    echo "after_load_hwm_kb=$(vmhwm_kb "${PID_OF[4]}")" >>"$WORK/rss.env"
  fi
  start_gateway gw "$RSS_PORT" "${PROXY_MODE[@]}"
  wait_until_serving gw "http://127.0.0.1:$RSS_PORT/health"
  idle_rss gw "$RSS_PORT" --path /health

  spawn pt "$WORK/pt.log" env -i PATH="$PATH" RUST_LOG=warn \
    "$PASSTHROUGH" --listen "127.0.0.1:$RSS_PASSTHROUGH_PORT" --upstream "127.0.0.1:$UPSTREAM_PORT"
  wait_until_serving pt "http://127.0.0.1:$RSS_PASSTHROUGH_PORT/"
  idle_rss pt "$RSS_PASSTHROUGH_PORT" --path /mcp --header "X-Authenticated-User: bench@example.com"
  log "RSS: $(tr '\n' ' ' <"$WORK/rss.env")"
}

# -------------------------------------------------------------- streams ---

# RSS of a process and of everything in its session (spawn's setsid): nginx
# is a master and its workers.
session_rss_kb() { ps -o rss= --sid "$1" | awk '{ s += $1 } END { print s + 0 }'; }

stop_group() {
  local pid
  for pid in "$@"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

# nginx as the MCP guides configure it for event streams: no response
# buffering, so each event goes out as it arrives; a worker needs two
# connections per stream.
start_streams_nginx() {
  local key=$1 port=$2 demo_port=$3 conns=$((2 * (STREAMS + STREAM_BASELINE) + 1024))
  mkdir -p "$WORK/$key-tmp"
  {
    cat <<CONF
worker_processes 2;
worker_rlimit_nofile $((conns + 1024));
daemon off;
pid $WORK/$key.pid;
error_log $WORK/$key-error.log warn;
events { worker_connections $conns; }
http {
CONF
    nginx_http_common "$key"
    cat <<CONF
  upstream demo {
    server 127.0.0.1:$demo_port;
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://demo;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 1h;
    }
  }
}
CONF
  } >"$WORK/$key.conf"
  start_nginx "$key"
}

# One target ($1: direct, nginx, pingora or gateway), fresh processes (its own
# demo server too): RSS idle, then holding STREAMS open GET streams, each
# established, settled (STREAM_SETTLE) and measured (STREAM_MEASURE) by
# examples/streams.rs. Writes $1_* lines to streams.env.
streams_one() {
  local key=$1 demo_port port url target client out line
  local headers=(-H "X-Authenticated-User: bench@example.com")
  # STREAM_KIND=post calls its tool `countdown`.
  local demo_args=()
  [ "$STREAM_KIND" = post ] && demo_args=(--progress-tool)
  # The demo server picks its own port and prints it: a port picked here could
  # be taken by then as the local port of some client's connection (EADDRINUSE).
  spawn "$key-demo" "$WORK/$key-demo.log" env -i PATH="$PATH" RUST_LOG=warn \
    "$DEMO" --listen 127.0.0.1:0 --name bench "${demo_args[@]}"
  for _ in $(seq 100); do
    demo_port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$WORK/$key-demo.log" 2>/dev/null || true)
    [ -n "$demo_port" ] && break
    sleep 0.1
  done
  [ -n "$demo_port" ] || die "($key) the demo server did not start: $(cat "$WORK/$key-demo.log")"
  wait_until_serving "$key-demo" "http://127.0.0.1:$demo_port/healthz"
  port=$(free_ports 1)
  case "$key" in
    direct)
      port=$demo_port
      url="http://127.0.0.1:$demo_port/$STREAM_PATH"
      target=${PID_OF[$key-demo]}
      ;;
    nginx)
      start_streams_nginx "$key" "$port" "$demo_port"
      url="http://127.0.0.1:$port/$STREAM_PATH"
      target=${PID_OF[$key]}
      wait_until_serving "$key" "http://127.0.0.1:$port/healthz"
      ;;
    pingora)
      spawn "$key" "$WORK/$key.log" env -i PATH="$PATH" RUST_LOG=warn \
        "$PASSTHROUGH" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$demo_port"
      url="http://127.0.0.1:$port/$STREAM_PATH"
      target=${PID_OF[$key]}
      wait_until_serving "$key" "http://127.0.0.1:$port/healthz"
      ;;
    gateway | before)
      printf 'servers:\n  - name: bench\n    urls: [http://127.0.0.1:%s/mcp]\n' "$demo_port" \
        >"$WORK/streams-gateway.yaml"
      local gateway=$GATEWAY
      if [ "$key" = before ]; then
        [ -x "${GATEWAY_BEFORE:-}" ] || die "TARGET_STREAMS has before: set GATEWAY_BEFORE to a gateway binary"
        GATEWAY=$GATEWAY_BEFORE
      fi
      GATEWAY_CONFIG=$WORK/streams-gateway.yaml start_gateway "$key" "$port" "${PROXY_MODE[@]}"
      GATEWAY=$gateway
      url="http://127.0.0.1:$port/servers/bench/$STREAM_PATH"
      target=${PID_OF[$key]}
      wait_until_serving "$key" "http://127.0.0.1:$port/health"
      # The idle RSS is read once the catalog has gathered the server: the
      # gathering's transient memory (its HTTP client, the CA bundle) read
      # as "idle" moved that figure by up to 25 MiB between runs.
      for _ in $(seq 300); do
        curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null |
          grep -q '^mcp_server_mcp_up{server="bench"} 1' && break
        sleep 0.1
      done
      ;;
  esac
  sleep 2
  echo "${key}_idle_kb=$(session_rss_kb "$target")" >>"$WORK/streams.env"
  if [ "$STREAM_BASELINE" -gt 0 ]; then
    out=$WORK/$key-baseline.jsonl
    spawn "$key-baseline" "$out" "$STREAMS_CLIENT" --url "$url" --count "$STREAM_BASELINE" \
      --settle 1 --measure 1 --label "$key-baseline" --kind "$STREAM_KIND" "${headers[@]}"
    for _ in $(seq 3000); do
      grep -q '"phase":"measured"' "$out" 2>/dev/null && break
      kill -0 "${PID_OF[$key-baseline]}" 2>/dev/null || die "($key) baseline streams client: $(cat "$out")"
      sleep 0.1
    done
    grep -q '"phase":"measured"' "$out" || die "($key) baseline streams not open after 300 s: $(cat "$out")"
    echo "${key}_baseline_kb=$(session_rss_kb "$target")" >>"$WORK/streams.env"
  fi
  out=$WORK/$key-streams.jsonl
  spawn "$key-client" "$out" "$STREAMS_CLIENT" --url "$url" --count "$STREAMS" \
    --settle "$STREAM_SETTLE" --measure "$STREAM_MEASURE" --label "$key" --kind "$STREAM_KIND" \
    "${headers[@]}"
  client=${PID_OF[$key-client]}
  for _ in $(seq 3000); do
    grep -q '"phase":"measured"' "$out" 2>/dev/null && break
    kill -0 "$client" 2>/dev/null || die "($key) streams client: $(cat "$out")"
    sleep 0.1
  done
  line=$(grep '"phase":"measured"' "$out") || die "($key) streams not measured after 300 s: $(cat "$out")"
  {
    echo "${key}_streams_kb=$(session_rss_kb "$target")"
    echo "${key}_established=$(ss -Htn state established "( sport = :$port )" | wc -l)"
    echo "${key}_upstream=$(ss -Htn state established "( dport = :$demo_port )" | wc -l)"
    echo "${key}_open=$(grep '"phase":"open"' "$out")"
    echo "${key}_measured=$line"
  } >>"$WORK/streams.env"
  log "($key) $(session_rss_kb "$target") KiB with $STREAMS streams; $line"
  grep -q '"closed":0,' <<<"$line" || die "($key) streams closed during the measurement: $line"
  # Free every descriptor before the next target.
  stop_group "$client" ${PID_OF[$key-baseline]:+"${PID_OF[$key-baseline]}"} "$target" "${PID_OF[$key-demo]}"
}

streams() {
  log "streams: $STREAMS open $STREAM_KIND streams per target (settle ${STREAM_SETTLE}s, measure ${STREAM_MEASURE}s)"
  echo "streams=$STREAMS" >>"$WORK/streams.env"
  echo "baseline=$STREAM_BASELINE" >>"$WORK/streams.env"
  echo "kind=$STREAM_KIND" >>"$WORK/streams.env"
  echo "settle=$STREAM_SETTLE" >>"$WORK/streams.env"
  echo "measure=$STREAM_MEASURE" >>"$WORK/streams.env"
  local key
  for key in ${TARGET_STREAMS:-direct nginx pingora gateway}; do streams_one "$key"; done
  python3 "$HERE/streams_report.py" "$WORK/streams.env"
}

# Our own release build leaves the 1-minute load average high for a while;
# let it decay (up to SETTLE_SECONDS) so "load before the run" describes the
# rest of the machine. It cannot wait out somebody else's build.
settle() {
  local waited=0
  while [ "$waited" -lt "$SETTLE_SECONDS" ] && awk '{ exit !($1 >= 1.0) }' /proc/loadavg; do
    sleep 5
    waited=$((waited + 5))
  done
}


sample_load() { cut -d' ' -f1-3 /proc/loadavg >>"$WORK/loadavg.log"; }

# ---------------------------------------------------------------- main ---

main() {
  ensure_tools
  raise_fd_limit
  build
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/mcp-bench.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  write_body
  settle
  # Set as in production; without it every gateway warns about a random key.
  SESSION_SECRET=$(head -c 32 /dev/urandom | base64)
  local load_before
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  log "load average before the run: $load_before (nproc $(nproc)); work dir $WORK"
  local started
  started=$(date -u '+%Y-%m-%d %H:%M UTC')

  local write=()
  [ "$WRITE_RESULTS" = 1 ] && write=(--write "$ROOT/BENCHMARKS.md")
  if [ "$MODE" = streams ]; then
    streams
    return
  fi
  if [ "$MODE" = federation ]; then
    federation "${write[@]}"
    return
  fi
  start_targets
  case "$MODE" in
    full)
      throughput
      rate
      rss
      # ~2 minutes at 1,000 streams; printed, not written to BENCHMARKS.md.
      streams
      # Its own section of BENCHMARKS.md, which report.py keeps.
      federation "${write[@]}"
      ;;
    smoke)
      throughput
      rate
      rss
      streams
      federation
      ;;
    throughput) throughput ;;
    rate) rate ;;
    rss) rss ;;
    instructions) instructions ;;
  esac
  sample_load

  {
    echo "command=$BENCH_COMMAND"
    echo "mode=$MODE"
    echo "date=$started"
    echo "revision=$(revision)"
    echo "load_before=$load_before"
    echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "wrk=wrk -t$THREADS -c$CONNECTIONS -d$DURATION (keep-alive), warm-up $WARMUP, $ROUNDS round(s)"
    echo "loadgen=loadgen --rate $RATE --duration $RATE_DURATION --connections $RATE_CONNECTIONS, $ROUNDS round(s)"
    echo "idle_connections=$IDLE_CONNECTIONS"
    local id
    for id in "${TARGETS[@]}"; do echo "name$id=${NAME[$id]}"; done
  } >"$WORK/meta.env"

  python3 "$HERE/report.py" "$WORK" "${write[@]}"
}

main "$@"
