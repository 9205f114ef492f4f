#!/usr/bin/env bash
# Quick start: the demo MCP server on 127.0.0.1:3001 and the gateway on
# 127.0.0.1:4444 in proxy-header mode with conf/gateway.yaml, so that the
# curl examples of the reference work at once. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release

"$bin/mcp-demo-server" --listen 127.0.0.1:3001 --name demo &
demo=$!
trap 'kill $demo 2>/dev/null || true' EXIT

export MCP_CLIENT_AUTH_ENABLED="${MCP_CLIENT_AUTH_ENABLED:-false}"
export TRUST_PROXY_AUTH="${TRUST_PROXY_AUTH:-true}"
export TRUSTED_PROXIES="${TRUSTED_PROXIES:-127.0.0.1/32,::1/128}"
# A demo password for the admin page on loopback only; the gateway itself
# has none by default (no login is possible until one is set).
export PLATFORM_ADMIN_EMAIL="${PLATFORM_ADMIN_EMAIL:-admin@example.com}"
export PLATFORM_ADMIN_PASSWORD="${PLATFORM_ADMIN_PASSWORD:-changeme}"
cat <<TXT

  Gateway: http://127.0.0.1:${PORT:-4444}  (proxy-header mode, demo server at /servers/demo/mcp)
  Admin:   http://127.0.0.1:${ADMIN_PORT:-4445}/  ($PLATFORM_ADMIN_EMAIL / $PLATFORM_ADMIN_PASSWORD; registry in ./mcp.db)
  Try:
    curl http://localhost:4444/health
    curl -H "X-Authenticated-User: test" http://localhost:4444/version
    curl -H "X-Authenticated-User: john.doe@example.com" -H "Content-Type: application/json" \\
         -H "Accept: application/json, text/event-stream" -X POST http://localhost:4444/servers/demo/mcp \\
         -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'

TXT
"$bin/mcp-gateway" --config conf/gateway.yaml
