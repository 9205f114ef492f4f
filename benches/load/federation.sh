# shellcheck shell=bash
# The federation benchmark (issue 9), MODE=federation of run.sh, which
# sources this file and provides WORK, GATEWAY, DEMO, spawn, start_gateway,
# PROXY_MODE, wait_until_serving, vmrss_kb, vmhwm_kb, field, log and die.
#
# (1) One call, five ways, the demo MCP server (src/bin/mcp-demo-server.rs)
#     as the upstream, every target measured by the same wrk script
#     (federation.lua) in one run:
#       (a) tools/call echo to the demo server directly, on held MCP sessions
#       (b) the same through the gateway's plain route /servers/demo/mcp
#       (c) POST /tools/invoke/demo-echo {"arguments": {"message": …}}
#       (d) tools/call through a virtual server that includes demo/*
#       (e) tools/call through /mcp, the virtual server of everything
#       (n) the same as (a) through nginx as a plain reverse proxy: what a
#           proxy hop costs on this machine, where wrk, the proxy and the
#           upstream share its cores
#     The issue asks c/a ≥ 0.8 and d/b ≥ 0.8; e/b, n/a and c/n are printed
#     beside them.
# (2) GET /tools with FED_SERVERS servers × FED_TOOLS tools (default
#     1,000 × 100), all served by one demo server process (a path per
#     server, filler tools, GET streams without ticks): req/s and p99 of the
#     default page (100) and of ?limit=1000, and the gateway's VmRSS with the
#     servers registered but nothing gathered, then with the whole catalog.
#
# (3) Optional, COMPARE_CONTEXTFORGE=1: the same call through ContextForge
#     (PyPI mcp-contextforge-gateway, installed into CF_VENV), the demo
#     server registered through its REST API, beside this gateway's:
#       (f) this gateway's POST /rpc tools/call demo-echo
#       (g) ContextForge's POST /rpc tools/call demo-echo
#
# Settings: FED_SERVERS=1000 FED_TOOLS=100 FED_TARGETS="a n b c d e"
#   FED_CATALOG_WAIT=600 (seconds for the catalog to be complete);
#   FED_PARTS="calls catalog" ((1) and (3), (2): either may be left out);
#   COMPARE_CONTEXTFORGE=0 CF_VENV=target/tmp/contextforge-venv; wrk's
#   CONNECTIONS, THREADS and ROUNDS are run.sh's, FED_DURATION and
#   FED_WARMUP (0: none) default to its DURATION and WARMUP.

FED_SERVERS=${FED_SERVERS:-1000}
FED_TOOLS=${FED_TOOLS:-100}
FED_CATALOG_WAIT=${FED_CATALOG_WAIT:-600}
read -r -a FED_TARGETS <<<"${FED_TARGETS:-a n b c d e}"
FED_PARTS=${FED_PARTS:-calls catalog}
FED_DURATION=${FED_DURATION:-$DURATION}
FED_WARMUP=${FED_WARMUP:-$WARMUP}
COMPARE_CONTEXTFORGE=${COMPARE_CONTEXTFORGE:-0}
# The version benches/load/contextforge.sh measures.
CF_VERSION=1.0.7
CF_VENV=${CF_VENV:-$ROOT/target/tmp/contextforge-venv}
CF_ADMIN=admin@example.com
FED_USER_HEADER="X-Authenticated-User: bench@example.com"
declare -A FED_NAME FED_URL FED_METHOD FED_HEAD FED_TAIL FED_EXPECT FED_SESSIONS

fed_env() { echo "$1=$2" >>"$WORK/federation.env"; }

# A demo server ($1: key) with options $2…, on a port it picks itself (one
# picked here could be taken by then); sets DEMO_PORT.
fed_demo() {
  local key=$1
  shift
  spawn "$key" "$WORK/$key.log" env -i PATH="$PATH" RUST_LOG=warn "$DEMO" --listen 127.0.0.1:0 "$@"
  DEMO_PORT=""
  for _ in $(seq 100); do
    DEMO_PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$WORK/$key.log" 2>/dev/null || true)
    [ -n "$DEMO_PORT" ] && break
    sleep 0.1
  done
  [ -n "$DEMO_PORT" ] || die "($key) the demo server did not start: $(cat "$WORK/$key.log")"
  wait_until_serving "$key" "http://127.0.0.1:$DEMO_PORT/healthz"
}

# nginx as a plain reverse proxy in front of the demo server at port $1,
# configured as run.sh's (2): two workers, a keep-alive upstream pool.
fed_nginx() {
  FED_NGINX_PORT=$(free_ports 1)
  {
    echo "worker_processes 2;"
    nginx_common fed-nginx
    echo "http {"
    nginx_http_common fed-nginx
    cat <<CONF
  upstream fed_demo {
    server 127.0.0.1:$1;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$FED_NGINX_PORT;
    location / {
      proxy_pass http://fed_demo;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
CONF
  } >"$WORK/fed-nginx.conf"
  start_nginx fed-nginx
  wait_until_serving fed-nginx "http://127.0.0.1:$FED_NGINX_PORT/healthz"
}

# Polls the gateway's /tools (every page) until it lists $2 available tools.
fed_wait_tools() {
  local port=$1 count=$2
  python3 "$HERE/federation.py" wait-tools --url "http://127.0.0.1:$port/tools" \
    --header "$FED_USER_HEADER" --count "$count" --timeout "$FED_CATALOG_WAIT"
}

# Target $1 speaks MCP at URL $2: opens one session per wrk thread, finds
# the echo tool's name there and checks one call (mcp_helper.py).
fed_mcp_target() {
  local key=$1 url=$2 out S_TOOL S_SESSIONS S_CTYPE
  out=$(python3 "$HERE/contextforge/mcp_helper.py" sessions --url "$url" --header "$FED_USER_HEADER" \
    --count "$THREADS" --find-tool echo --message-file "$WORK/fed-message.txt" --expect '{message}') ||
    die "($key) ${FED_NAME[$key]}: no working session at $url"
  eval "$out"
  FED_URL[$key]=$url
  FED_METHOD[$key]=POST
  FED_HEAD[$key]='{"jsonrpc":"2.0","id":'
  FED_TAIL[$key]=',"method":"tools/call","params":{"name":"'$S_TOOL'","arguments":{"message":"'$FED_MESSAGE'"}}}'
  FED_EXPECT[$key]=$FED_MESSAGE
  FED_SESSIONS[$key]=$S_SESSIONS
  log "($key) ${FED_NAME[$key]}: tool $S_TOOL, reply $S_CTYPE"
}

# Target $1 answers a plain HTTP request ($2 method, $3 URL, body $4, or
# with a tail $5 the JSON-RPC id between $4 and $5) with a 200 carrying the
# marker $6; checked once before anything is timed.
fed_http_target() {
  local key=$1 method=$2 url=$3 head=$4 tail=$5 expect=$6 reply code data=() body
  body=$head${tail:+1$tail}
  [ -n "$body" ] && data=(-H 'Content-Type: application/json' --data-binary "$body")
  reply=$(curl -s --max-time 30 -o - -w '\n%{http_code}' -X "$method" "$url" -H "$FED_USER_HEADER" \
    "${data[@]}") ||
    die "($key) ${FED_NAME[$key]}: request failed"
  code=${reply##*$'\n'}
  [ "$code" = 200 ] || die "($key) ${FED_NAME[$key]} answered $code: ${reply:0:300}"
  [[ "$reply" == *"$expect"* ]] || die "($key) ${FED_NAME[$key]}: no marker in ${reply:0:300}"
  FED_URL[$key]=$url
  FED_METHOD[$key]=$method
  FED_HEAD[$key]=$head
  FED_TAIL[$key]=$tail
  FED_EXPECT[$key]=$expect
  FED_SESSIONS[$key]=""
}

# MCP requests the upstream demo server has received (its /healthz), at
# FED_UPSTREAM: per call, 1 means a held upstream session, more that the
# gateway opened sessions (initialize, GET stream) for calls.
fed_upstream_requests() {
  curl -s --max-time 10 "$FED_UPSTREAM/healthz" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["mcp_requests"])' ||
    die "the demo server at $FED_UPSTREAM does not answer /healthz"
}

fed_wrk() {
  local key=$1 duration=$2 out=$3 tail=()
  [ -n "${FED_TAIL[$key]}" ] && tail=(BENCH_BODY_TAIL="${FED_TAIL[$key]}")
  env BENCH_METHOD="${FED_METHOD[$key]}" BENCH_BODY_HEAD="${FED_HEAD[$key]}" "${tail[@]}" \
    BENCH_EXPECT="${FED_EXPECT[$key]}" BENCH_SESSIONS="${FED_SESSIONS[$key]}" \
    BENCH_HEADERS="$FED_USER_HEADER" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --timeout 10s \
    -s "$HERE/federation.lua" "${FED_URL[$key]}" >"$out" 2>&1 || die "wrk failed on ($key): $(cat "$out")"
}

# Warm-up, then ROUNDS rounds over the keys $@, each round starting at a
# different one; any failed response fails the run.
fed_measure() {
  local keys=("$@") n=$# round i key out line before upstream
  if [ "$FED_WARMUP" != 0 ]; then
    for key in "${keys[@]}"; do fed_wrk "$key" "$FED_WARMUP" "$WORK/fed-warmup-$key.txt"; done
  fi
  for ((round = 1; round <= ROUNDS; round++)); do
    for ((i = 0; i < n; i++)); do
      key=${keys[$(((i + round - 1) % n))]}
      sample_load
      out=$WORK/fed-wrk-$key-$round.txt
      before=$(fed_upstream_requests)
      fed_wrk "$key" "$FED_DURATION" "$out"
      upstream=$(($(fed_upstream_requests) - before))
      line=$(grep '^BENCH ' "$out") || die "no result line from wrk on ($key): $(cat "$out")"
      if [ "$(field non200 "$line")$(field badbody "$line")$(field errors "$line")" != 000 ]; then
        die "($key) ${FED_NAME[$key]}: $line $(grep '^BENCH_FIRST_BAD' "$out" | cut -c1-300)"
      fi
      # A request slower than the whole measurement is not a fast target.
      [ "$(field requests "$line")" != 0 ] || die "($key) ${FED_NAME[$key]}: no response within $FED_DURATION"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$key" "$round" "$(field rps "$line")" \
        "$(field p50_us "$line")" "$(field p99_us "$line")" "$(field requests "$line")" \
        "$upstream" >>"$WORK/federation.tsv"
      log "round $round ($key) ${FED_NAME[$key]}: $(field rps "$line") req/s," \
        "p50 $(field p50_us "$line") µs, p99 $(field p99_us "$line") µs, $upstream upstream MCP requests"
    done
  done
}

# (1): the demo server, a gateway in front of it with a virtual server.
fed_calls() {
  fed_demo fed-demo --name demo
  local demo=$DEMO_PORT port
  FED_UPSTREAM=http://127.0.0.1:$demo
  port=$(free_ports 1)
  cat >"$WORK/fed-gateway.yaml" <<YAML
servers:
  - name: demo
    urls: [http://127.0.0.1:$demo/mcp]
virtual_servers:
  - name: demo-only
    include: [demo/*]
YAML
  GATEWAY_CONFIG=$WORK/fed-gateway.yaml start_gateway fed "$port" "${PROXY_MODE[@]}"
  wait_until_serving fed "http://127.0.0.1:$port/health"
  fed_wait_tools "$port" 2 >/dev/null || die "the demo server's tools never reached the catalog: $(tail -n 5 "$WORK/fed.log")"
  local base=http://127.0.0.1:$port
  FED_NAME[a]="demo server, direct (held session)"
  FED_NAME[b]="gateway, plain route /servers/demo/mcp (held session)"
  FED_NAME[c]="gateway, POST /tools/invoke/demo-echo"
  FED_NAME[d]="gateway, virtual server /servers/demo-only/mcp (held session)"
  FED_NAME[e]="gateway, /mcp (held session)"
  FED_NAME[n]="nginx reverse proxy to the demo server (held session)"
  local key
  for key in "${FED_TARGETS[@]}"; do
    case "$key" in
      a) fed_mcp_target a "http://127.0.0.1:$demo/mcp" ;;
      b) fed_mcp_target b "$base/servers/demo/mcp" ;;
      c) fed_http_target c POST "$base/tools/invoke/demo-echo" \
        '{"arguments":{"message":"'"$FED_MESSAGE"'"}}' "" "$FED_MESSAGE" ;;
      d) fed_mcp_target d "$base/servers/demo-only/mcp" ;;
      e) fed_mcp_target e "$base/mcp" ;;
      n)
        fed_nginx "$demo"
        fed_mcp_target n "http://127.0.0.1:$FED_NGINX_PORT/mcp"
        ;;
      *) die "FED_TARGETS: unknown target $key (a n b c d e)" ;;
    esac
    fed_env "name_$key" "${FED_NAME[$key]}"
  done
  local targets=("${FED_TARGETS[@]}")
  if [ "$COMPARE_CONTEXTFORGE" = 1 ]; then
    fed_contextforge "$demo" "$base"
    targets+=(f g)
  fi
  log "federation calls: wrk -t$THREADS -c$CONNECTIONS -d$FED_DURATION, $ROUNDS round(s), warm-up $FED_WARMUP per target"
  fed_measure "${targets[@]}"
  stop_group "${PID_OF[fed]}" "${PID_OF[fed-demo]}"
  if [ -n "${PID_OF[fed-nginx]:-}" ]; then stop_group "${PID_OF[fed-nginx]}"; fi
  if [ -n "${PID_OF[cf]:-}" ]; then stop_group "${PID_OF[cf]}"; fi
}

# ----------------------------------------------------------- ContextForge ---

# Idempotent: a venv that already holds the pinned version is reused.
fed_install_contextforge() {
  local have py
  have=$("$CF_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp-contextforge-gateway"))' 2>/dev/null || true)
  [ "$have" = "$CF_VERSION" ] && [ -x "$CF_VENV/bin/mcpgateway" ] && return
  for py in python3.11 python3.12 python3.13 python3; do
    if command -v "$py" >/dev/null 2>&1 &&
      "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      break
    fi
    py=""
  done
  [ -n "$py" ] || die "ContextForge needs Python >= 3.11"
  log "installing mcp-contextforge-gateway==$CF_VERSION into $CF_VENV"
  mkdir -p "$(dirname "$CF_VENV")"
  [ -x "$CF_VENV/bin/python" ] || "$py" -m venv "$CF_VENV"
  "$CF_VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$CF_VENV/bin/pip" install -q "mcp-contextforge-gateway==$CF_VERSION" || die "pip install mcp-contextforge-gateway failed"
}

cf_secret() { head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 48; }

# ContextForge in proxy-header mode as benches/load/contextforge.sh starts it
# (see BENCHMARKS.md, "Optional: ContextForge", for why each setting), the
# demo server at port $1 registered as "demo"; (f) is this gateway's /rpc at
# $2, (g) ContextForge's.
fed_contextforge() {
  local demo=$1 base=$2 port dir=$WORK/cf token env_list
  fed_install_contextforge
  port=$(free_ports 1)
  mkdir -p "$dir"
  printf '%s\n' "PATH=$CF_VENV/bin:$PATH" "HOME=$dir" \
    MCP_CLIENT_AUTH_ENABLED=false TRUST_PROXY_AUTH=true TRUST_PROXY_AUTH_DANGEROUSLY=true \
    "PROXY_USER_HEADER=X-Authenticated-User" REQUIRE_USER_IN_DB=false \
    SSRF_ALLOW_LOCALHOST=true RATE_LIMITING_ENABLED=false \
    "JWT_SECRET_KEY=$(cf_secret)" "AUTH_ENCRYPTION_SECRET=$(cf_secret)" \
    "PLATFORM_ADMIN_EMAIL=$CF_ADMIN" "PLATFORM_ADMIN_PASSWORD=Pa-$(cf_secret)-9!" \
    "DATABASE_URL=sqlite:///$dir/mcp.db" LOG_LEVEL=WARNING >"$dir/env.list"
  mapfile -t env_list <"$dir/env.list"
  log "starting ContextForge $CF_VERSION on :$port; a first start migrates a fresh database (~20 s)"
  spawn cf "$WORK/cf.log" env -i -C "$dir" "${env_list[@]}" "$CF_VENV/bin/mcpgateway" --host 127.0.0.1 --port "$port"
  for _ in $(seq 1800); do
    kill -0 "${PID_OF[cf]}" 2>/dev/null || die "ContextForge exited at start-up: $(tail -n 20 "$WORK/cf.log")"
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/health" && break
    sleep 0.1
  done
  token=$(env -i -C "$dir" "${env_list[@]}" "$CF_VENV/bin/python" -m mcpgateway.utils.create_jwt_token \
    -u "$CF_ADMIN" --admin --exp 120 2>>"$WORK/cf.log") || die "create_jwt_token failed: $(tail -n 5 "$WORK/cf.log")"
  python3 "$HERE/contextforge/mcp_helper.py" register --base "http://127.0.0.1:$port" \
    --upstream "http://127.0.0.1:$demo/mcp" --name demo --admin-email "$CF_ADMIN" \
    --user bench@example.com --header X-Authenticated-User --token "$token" ||
    die "registering the demo server in ContextForge failed"
  local head='{"jsonrpc":"2.0","id":'
  local tail=',"method":"tools/call","params":{"name":"demo-echo","arguments":{"message":"'$FED_MESSAGE'"}}}'
  FED_NAME[f]="gateway, POST /rpc tools/call"
  FED_NAME[g]="ContextForge $CF_VERSION, POST /rpc tools/call"
  fed_http_target f POST "$base/rpc" "$head" "$tail" "$FED_MESSAGE"
  fed_http_target g POST "http://127.0.0.1:$port/rpc" "$head" "$tail" "$FED_MESSAGE"
  fed_env name_f "${FED_NAME[f]}"
  fed_env name_g "${FED_NAME[g]}"
  fed_env cf_version "$CF_VERSION"
}

# ------------------------------------------------------------ the catalog ---

# The YAML of FED_SERVERS servers at demo port $1 (each its own path).
fed_catalog_yaml() {
  local port=$1 i
  echo "servers:"
  for ((i = 1; i <= FED_SERVERS; i++)); do
    printf '  - name: s%04d\n    urls: [http://127.0.0.1:%s/s/s%04d/mcp]\n' "$i" "$port" "$i"
  done
}

# (2): GET /tools at FED_SERVERS × FED_TOOLS. The gateway starts with every
# server at a port where nothing listens (registered, nothing gathered):
# its VmRSS then is the "before"; SIGHUP then points them at the demo
# server, and the catalog is gathered as for servers added at run time.
fed_catalog() {
  local total=$((FED_SERVERS * FED_TOOLS)) port dead pid failed waited
  [ "$FED_TOOLS" -ge 2 ] || die "FED_TOOLS must be at least 2 (the demo server's own echo and whoami)"
  fed_demo fed-catalog-demo --name catalog --quiet-streams --extra-tools $((FED_TOOLS - 2))
  FED_UPSTREAM=http://127.0.0.1:$DEMO_PORT
  read -r port dead < <(free_ports 2)
  fed_catalog_yaml "$dead" >"$WORK/fed-catalog.yaml"
  GATEWAY_CONFIG=$WORK/fed-catalog.yaml start_gateway cat "$port" "${PROXY_MODE[@]}"
  pid=${PID_OF[cat]}
  wait_until_serving cat "http://127.0.0.1:$port/health"
  # Every server tried once and failed: nothing of the catalog is held.
  for waited in $(seq 600); do
    failed=$(grep -c 'catalog unavailable' "$WORK/cat.log" || true)
    [ "$failed" -ge "$FED_SERVERS" ] && break
    sleep 0.1
  done
  [ "$failed" -ge "$FED_SERVERS" ] || log "only $failed of $FED_SERVERS servers failed their first gathering after 60 s; reading VmRSS anyway"
  sleep 2
  fed_env cat_before_kb "$(vmrss_kb "$pid")"
  fed_catalog_yaml "$DEMO_PORT" >"$WORK/fed-catalog.yaml"
  local started=$EPOCHREALTIME
  kill -HUP "$pid"
  log "catalog: $FED_SERVERS servers × $FED_TOOLS tools; waiting for all $total (up to ${FED_CATALOG_WAIT} s)"
  fed_wait_tools "$port" "$total" >/dev/null || die "the catalog did not reach $total tools: $(tail -n 5 "$WORK/cat.log")"
  fed_env cat_gathered_s "$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')"
  sleep 2
  fed_env cat_after_kb "$(vmrss_kb "$pid")"
  fed_env cat_upstream_conns "$(ss -Htn state established "( dport = :$DEMO_PORT )" | wc -l)"
  local base=http://127.0.0.1:$port/tools last
  FED_NAME[t100]="GET /tools (default page, 100)"
  FED_NAME[t1000]="GET /tools?limit=1000"
  # The last tool of each page: a page cut short misses it.
  last=$(python3 "$HERE/federation.py" last-name --url "$base" --header "$FED_USER_HEADER") || die "GET /tools failed"
  fed_http_target t100 GET "$base" "" "" "\"name\":\"$last\""
  last=$(python3 "$HERE/federation.py" last-name --url "$base?limit=1000" --header "$FED_USER_HEADER") || die "GET /tools?limit=1000 failed"
  fed_http_target t1000 GET "$base?limit=1000" "" "" "\"name\":\"$last\""
  fed_env name_t100 "${FED_NAME[t100]}"
  fed_env name_t1000 "${FED_NAME[t1000]}"
  log "catalog: wrk -t$THREADS -c$CONNECTIONS -d$FED_DURATION, $ROUNDS round(s)"
  fed_measure t100 t1000
  fed_env cat_loaded_kb "$(vmrss_kb "$pid")"
  fed_env cat_hwm_kb "$(vmhwm_kb "$pid")"
  stop_group "$pid" "${PID_OF[fed-catalog-demo]}"
}

federation() {
  local compared=""
  [ "$COMPARE_CONTEXTFORGE" = 1 ] && compared=" f g"
  log "federation ($FED_PARTS): calls to targets ${FED_TARGETS[*]}$compared; catalog of $FED_SERVERS servers × $FED_TOOLS tools"
  # The echo message carries a per-run marker: only a real reply has it.
  FED_MESSAGE=$(python3 -c 'import secrets; m = "fed-bench-" + secrets.token_hex(8) + "-"; print(m + "x" * (900 - len(m)))')
  printf '%s\n' "$FED_MESSAGE" >"$WORK/fed-message.txt"
  fed_env command "$BENCH_COMMAND"
  fed_env mode "$MODE"
  fed_env date "$(date -u '+%Y-%m-%d %H:%M UTC')"
  fed_env revision "$(revision)"
  fed_env load_before "$(cut -d' ' -f1-3 /proc/loadavg)"
  fed_env wrk "wrk -t$THREADS -c$CONNECTIONS -d$FED_DURATION --timeout 10s (keep-alive), warm-up $FED_WARMUP per target, $ROUNDS round(s)"
  fed_env servers "$FED_SERVERS"
  fed_env tools "$FED_TOOLS"
  case " $FED_PARTS " in *" calls "*) fed_calls ;; esac
  case " $FED_PARTS " in *" catalog "*) fed_catalog ;; esac
  fed_env load_after "$(cut -d' ' -f1-3 /proc/loadavg)"
  python3 "$HERE/federation.py" report "$WORK" "$@"
}
