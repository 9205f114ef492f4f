#!/usr/bin/env python3
"""Helpers of benches/load/contextforge.sh (standard library only).

  register  register the everything server in ContextForge through its REST
            API, and create the (non-admin) user the load runs as, with a
            global role that may list and call tools
  sessions  open MCP sessions at one target (initialize +
            notifications/initialized), find the echo tool's name there
            (tools/list) and prove that tools/call answers 200 with the echo
            text (--expect); prints shell assignments (TOOL=…, SESSIONS=…);
            also used by the federation benchmark (run.sh MODE=federation)
  report    medians over the rounds, ratios; prints the table and, with
            --write, replaces the "Optional: ContextForge" section of
            BENCHMARKS.md (and nothing else)
"""
import argparse
import json
import re
import secrets
import shlex
import statistics
import sys
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_common import machine, ratio, read_env  # noqa: E402

ACCEPT = "application/json, text/event-stream"
PROTOCOL = "2025-06-18"


def die(msg):
    print(f"mcp_helper: {msg}", file=sys.stderr)
    sys.exit(1)


def http(method, url, body=None, headers=(), timeout=60):
    """One request; returns (status, headers, text). HTTP errors are answers."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", ACCEPT)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for line in headers:
        name, _, value = line.partition(":")
        req.add_header(name.strip(), value.strip())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read().decode("utf-8", "replace")


def jsonrpc_messages(headers, text):
    """The JSON-RPC messages of a reply: one JSON body, or SSE `data:` events."""
    ctype = (headers.get("Content-Type") or "").lower()
    if "text/event-stream" in ctype:
        out, data = [], []
        for line in text.splitlines() + [""]:
            if line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif line == "" and data:
                try:
                    out.append(json.loads("\n".join(data)))
                except ValueError:
                    pass
                data = []
        return out
    try:
        return [json.loads(text)]
    except ValueError:
        return []


def result_of(headers, text, rid):
    for msg in jsonrpc_messages(headers, text):
        if isinstance(msg, dict) and msg.get("id") == rid:
            if "error" in msg:
                die(f"JSON-RPC error: {msg['error']}")
            return msg.get("result")
    die(f"no JSON-RPC reply with id {rid} in: {text[:400]}")


# ----------------------------------------------------------------- register


def register(args):
    base = args.base.rstrip("/")
    admin = [f"{args.header}: {args.admin_email}"]
    if args.token:
        # In proxy mode ContextForge's REST API takes the identity from the
        # proxy header, not from the token; sent anyway, it costs nothing.
        admin.append(f"Authorization: Bearer {args.token}")

    def call(method, path, body, ok=(200, 201)):
        status, _, text = http(method, base + path, body, admin)
        if status not in ok:
            die(f"{method} {path} answered {status}: {text[:400]}")
        return json.loads(text) if text else {}

    gw = call("POST", "/gateways", {
        "name": args.name,
        "url": args.upstream,
        "transport": "STREAMABLEHTTP",
        "visibility": "public",
        "description": "load benchmark upstream (@modelcontextprotocol/server-everything)",
    })
    print(f"registered gateway {gw.get('name')} ({gw.get('id')}) -> {gw.get('url')}, status {gw.get('status')}",
          file=sys.stderr)
    # A user that is not in ContextForge's database gets 401 on /mcp even with
    # REQUIRE_USER_IN_DB=false (only the platform admin is exempt). The password
    # is never used (proxy mode), but one is required; it must not contain the
    # user name.
    call("POST", "/auth/email/admin/users", {
        "email": args.user,
        "password": "Zq7-" + secrets.token_urlsafe(18) + "9a!",
        "full_name": "Load benchmark caller",
    })
    # New users get platform_viewer (no tools.execute) and team_admin of their
    # personal team, which ContextForge deliberately ignores for RBAC: without
    # a role granting tools.execute every call answers 200 "Access denied".
    role = call("POST", "/rbac/roles", {
        "name": "bench-tool-caller",
        "description": "load benchmark: list and call tools",
        "scope": "global",
        "permissions": ["tools.read", "tools.execute"],
    })
    call("POST", f"/rbac/users/{args.user}/roles", {"role_id": role["id"], "scope": "global"})
    print(f"user {args.user} created with global role bench-tool-caller (tools.read, tools.execute)", file=sys.stderr)


# ----------------------------------------------------------------- sessions


def open_session(url, headers):
    status, hdrs, text = http("POST", url, {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                   "clientInfo": {"name": "contextforge-bench", "version": "1"}},
    }, headers)
    if status != 200:
        die(f"initialize at {url} answered {status}: {text[:400]}")
    result_of(hdrs, text, 1)
    sid = hdrs.get("Mcp-Session-Id")
    with_sid = headers + ([f"Mcp-Session-Id: {sid}"] if sid else [])
    status, _, text = http("POST", url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, with_sid)
    if status not in (200, 202):
        die(f"notifications/initialized at {url} answered {status}: {text[:400]}")
    return sid, with_sid


def sessions(args):
    headers = list(args.header or [])
    message = Path(args.message_file).read_text().strip()
    sids, tool = [], args.tool
    for n in range(args.count):
        sid, with_sid = open_session(args.url, headers)
        sids.append(sid or "-")
        if n == 0 and not tool:
            status, hdrs, text = http("POST", args.url, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, with_sid)
            if status != 200:
                die(f"tools/list at {args.url} answered {status}: {text[:400]}")
            names = [t["name"] for t in result_of(hdrs, text, 2).get("tools", [])]
            # ContextForge prefixes a gateway's tools with its slug and a
            # separator (default "-"): everything-echo.
            wanted = args.find_tool
            found = [n for n in names if n == wanted] or \
                    [n for n in names if re.fullmatch(r".+[-_.]" + re.escape(wanted), n)]
            if len(found) != 1:
                die(f"tool {wanted!r} not found once at {args.url}: {names}")
            tool = found[0]
        # Prove every session really reaches the everything server.
        status, hdrs, text = http("POST", args.url, {
            "jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": tool, "arguments": {"message": message}},
        }, with_sid)
        if status != 200:
            die(f"tools/call {tool} at {args.url} answered {status}: {text[:400]}")
        res = result_of(hdrs, text, 3)
        texts = [c.get("text", "") for c in (res or {}).get("content", [])]
        if (res or {}).get("isError") or args.expect.replace("{message}", message) not in texts:
            die(f"tools/call {tool} at {args.url} did not echo: {text[:400]}")
    ctype = (hdrs.get("Content-Type") or "?").split(";")[0]
    print(f"S_TOOL={shlex.quote(tool)}")
    print(f"S_SESSIONS={shlex.quote(' '.join(sids))}")
    print(f"S_CTYPE={shlex.quote(ctype)}")


# ------------------------------------------------------------------- report


def fmt_ms(us):
    return "–" if us is None else f"{us / 1000:.2f} ms"


def fmt_cpu_per_call(rows):
    """Median over the rounds of the proxy's CPU time per answered call."""
    per = [r["proxy_cpu"] / 100 / r["rps"] * 1e6 for r in rows if r["rps"]]
    if not per:
        return "–"
    us = statistics.median(per)
    return f"{us / 1000:.1f} ms" if us >= 1000 else f"{us:.0f} µs"


TARGETS = (
    ("direct", "(1) everything server, direct"),
    ("gateway", "(2) mcp-gateway, proxy header"),
    ("contextforge", "(3) ContextForge, proxy header, stateful sessions"),
    ("contextforge_stateless", "(4) ContextForge, proxy header, default (stateless)"),
)


class Results:
    def __init__(self, work):
        self.meta = read_env(work / "meta.env")
        self.rows = {}  # key -> list of dicts (one per round)
        tsv = work / "results.tsv"
        if tsv.exists():
            for line in tsv.read_text().splitlines():
                key, rnd, rps, p50, p99, requests, non200, bad, errors, proxy_cpu, up_cpu, load = line.split("\t")
                self.rows.setdefault(key, []).append({
                    "round": int(rnd), "rps": float(rps), "p50": float(p50), "p99": float(p99),
                    "requests": int(requests), "non200": int(non200), "bad": int(bad), "errors": int(errors),
                    "proxy_cpu": float(proxy_cpu), "up_cpu": float(up_cpu), "load": float(load),
                })

    def med(self, key, field):
        vals = [r[field] for r in self.rows.get(key, [])]
        return statistics.median(vals) if vals else None

    def total(self, key, field):
        return sum(r[field] for r in self.rows.get(key, []))

    def failures(self):
        return {k: self.total(k, "non200") + self.total(k, "bad") + self.total(k, "errors") for k, _ in TARGETS}

    def spread(self, key):
        vals = [r["rps"] for r in self.rows.get(key, [])]
        if len(vals) < 2:
            return "–"
        return f"±{(max(vals) - min(vals)) / 2 / statistics.median(vals) * 100:.0f} %"

    def table(self):
        head = ["target", "req/s", "spread", "p50", "p99", "requests", "failed (non-200 / no echo / socket)",
                "proxy CPU", "proxy CPU per call", "upstream CPU"]
        out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for key, name in TARGETS:
            if key not in self.rows:
                continue
            proxy_cpu = "–" if key == "direct" else f"{self.med(key, 'proxy_cpu'):.0f} %"
            per_call = "–" if key == "direct" else fmt_cpu_per_call(self.rows[key])
            out.append("| " + " | ".join([
                name,
                f"{self.med(key, 'rps'):,.0f}",
                self.spread(key),
                fmt_ms(self.med(key, "p50")),
                fmt_ms(self.med(key, "p99")),
                f"{self.total(key, 'requests'):,}",
                f"{self.total(key, 'non200')} / {self.total(key, 'bad')} / {self.total(key, 'errors')}",
                proxy_cpu,
                per_call,
                f"{self.med(key, 'up_cpu'):.0f} %",
            ]) + " |")
        return "\n".join(out)

    def ratios(self):
        d, g, c, s = (self.med(k, "rps") for k in ("direct", "gateway", "contextforge", "contextforge_stateless"))
        out = [
            ("mcp-gateway / direct (2)/(1)", ratio(g, d)),
            ("ContextForge / direct (3)/(1)", ratio(c, d)),
            ("mcp-gateway / ContextForge (2)/(3)", ratio(g, c)),
        ]
        if s:
            out += [
                ("ContextForge stateless / direct (4)/(1)", ratio(s, d)),
                ("mcp-gateway / ContextForge stateless (2)/(4)", ratio(g, s)),
            ]
        return out

    def latency_ratios(self):
        g50, c50 = self.med("gateway", "p50"), self.med("contextforge", "p50")
        g99, c99 = self.med("gateway", "p99"), self.med("contextforge", "p99")
        return ratio(c50, g50), ratio(c99, g99)

    def load_line(self):
        loads = [v for rows in self.rows.values() for v in (r["load"] for r in rows)]
        during = f"median {statistics.median(loads):.2f}, max {max(loads):.2f}" if loads else "–"
        return (f"before the run {self.meta.get('load_before', '?')} (1/5/15 min); during the run "
                f"(1-min average sampled before each measurement, the benchmark's own processes included): "
                f"{during}; after {self.meta.get('load_after', '?')}")


SECTION_INTRO = """## Optional: ContextForge

[`benches/load/contextforge.sh`](benches/load/contextforge.sh) (optional: not
part of CI, `make test` or `make bench-load`) puts the gateway next to
ContextForge (PyPI `mcp-contextforge-gateway`, the Python gateway whose
variables and proxy-authentication behaviour `PROXY-AUTH.md` describes), both
in proxy-header mode, in front of a real MCP server: the official "everything"
server (`@modelcontextprotocol/server-everything`, Streamable HTTP), in one run.

```bash
benches/load/contextforge.sh          # ~5 min once installed; rewrites this section
DURATION=30s CONNECTIONS=32 ROUNDS=5 benches/load/contextforge.sh
CF_WORKERS=2 WRITE_RESULTS=0 benches/load/contextforge.sh
```

Settings (environment): `DURATION` (15s), `CONNECTIONS` (16), `THREADS`
(2), `ROUNDS` (3), `WARMUP` (3s) for wrk; `CF_WORKERS` (uvicorn workers of
the stateless ContextForge (4), default 1 as its `mcpgateway` CLI starts it;
the stateful one (3) always has one, as its sessions live in one worker's
memory); `CF_STATELESS=0` skips (4); `QUIET_WAIT` (seconds, in all, to
wait for other load benchmarks — wrk, loadgen, `run.sh` — or a compilation
(rustc) to finish, default 600);
`SKIP_BUILD=1`, `KEEP_TMP=1`, `WRITE_RESULTS=0`. ContextForge is installed
once into a venv under `${XDG_CACHE_HOME:-~/.cache}/mcp-gateway-bench/`, the
everything server into an npm prefix beside it (pinned versions; re-runs
reuse them). A run with any failed response does not rewrite this section.

### What runs

All on loopback; every target gets the same wrk script
([`benches/load/contextforge/echo.lua`](benches/load/contextforge/echo.lua)),
threads, connections and duration:

| # | target | URL | identity |
|---|---|---|---|
| (1) | everything server, direct | `http://127.0.0.1:P/mcp` | (header sent, ignored) |
| (2) | mcp-gateway | `/servers/everything/mcp`, YAML server `everything` at (1) | `MCP_CLIENT_AUTH_ENABLED=false TRUST_PROXY_AUTH=true TRUSTED_PROXIES=127.0.0.1/32`, `X-Authenticated-User` |
| (3) | ContextForge, stateful sessions | `/mcp/` (trailing slash); (1) registered with `POST /gateways` (`transport: STREAMABLEHTTP`); `USE_STATEFUL_SESSIONS=true` | `MCP_CLIENT_AUTH_ENABLED=false TRUST_PROXY_AUTH=true TRUST_PROXY_AUTH_DANGEROUSLY=true`, `X-Authenticated-User` |
| (4) | ContextForge as it comes (stateless) | as (3), `USE_STATEFUL_SESSIONS` left at its default `false` | as (3) |

- **Load:** per wrk thread one MCP session, opened beforehand
  ([`mcp_helper.py`](benches/load/contextforge/mcp_helper.py): `initialize`,
  `notifications/initialized`, `tools/list` to find the tool's name, one
  checked `tools/call`); then wrk POSTs `tools/call` of `echo` (ContextForge:
  `everything-echo`) with a 900-character message, the session's
  `Mcp-Session-Id` (where the target gave one: (4) gives none), `Accept:
  application/json, text/event-stream`, the identity header and a fresh
  JSON-RPC id per request, over keep-alive connections. The everything
  server answers `text/event-stream` (passed through by (2)); ContextForge
  answers `application/json`.
- **Why two ContextForge rows:** as it comes, ContextForge's `/mcp/` is
  stateless and opens a new upstream MCP session (initialize, SSE GET, call,
  DELETE) for every `tools/call`; with `USE_STATEFUL_SESSIONS=true` it hands
  out an `Mcp-Session-Id` and reuses one upstream session per client
  session, like (2), which only forwards the client's own session. (3) is the
  like-for-like comparison; (4) is what a default install does.
- **Checked:** every response must be a 200 whose body contains
  `Echo: <message>` (the message carries a per-run random marker); anything
  else (a 401, an "Access denied" tool result, a JSON-RPC error) and every
  socket error is counted in "failed".
- **Rounds** alternate the targets, each round starting at a different one;
  the table shows medians. Before each measurement the script waits (within
  `QUIET_WAIT`) while someone else's wrk, loadgen, `run.sh` or rustc runs. CPU is
  that of the proxy's process tree and of the everything server during the
  measurement, in % of one core; "per call" divides it by the req/s.
- **ContextForge settings** (both instances): `TRUST_PROXY_AUTH_DANGEROUSLY=true`,
  `MCP_CLIENT_AUTH_ENABLED=false`, `TRUST_PROXY_AUTH=true`,
  `PROXY_USER_HEADER=X-Authenticated-User`, `REQUIRE_USER_IN_DB=false`,
  `SSRF_ALLOW_LOCALHOST=true`, `RATE_LIMITING_ENABLED=false`, random
  48-character `JWT_SECRET_KEY`, `AUTH_ENCRYPTION_SECRET` and
  `PLATFORM_ADMIN_PASSWORD`, `PLATFORM_ADMIN_EMAIL=admin@example.com`, SQLite
  `DATABASE_URL` in the run's temporary directory, `LOG_LEVEL=WARNING`, all
  else default; started as `mcpgateway --host 127.0.0.1 --port P` from that
  directory with a clean environment. Registration as the platform admin
  (`X-Authenticated-User: admin@example.com`, plus an admin JWT from
  `python -m mcpgateway.utils.create_jwt_token --admin`, which proxy mode
  ignores). The load runs as `bench@example.com`, a non-admin user the script
  creates and gives a global role with `tools.read` + `tools.execute` (see
  the notes below).
- **mcp-gateway:** `target/release/mcp-gateway` (built only if missing, and
  copied into the temporary directory so a concurrent rebuild cannot swap it
  mid-run), `LOG_LEVEL=warn SHUTDOWN_DRAIN_SECONDS=0`, clean environment,
  random `SESSION_SECRET`.

**Caveat:** wrk, the proxy, the everything server (one Node process) and
ContextForge (one Python process each) share the machine's 2 cores, so the
figures only mean something next to each other; the CPU per call is the
steadier figure. The everything server is the ceiling of rows (1) and (2)
(it also keeps every reply in an in-memory event store for resumability);
ContextForge's rows are bound by its Python worker, which is at or near
100 % of a core while the everything server idles."""

NOTES = """### What ContextForge needed beyond the settings above

- The calling user must exist in ContextForge's database: with
  `REQUIRE_USER_IN_DB=false` an unknown `X-Authenticated-User` still gets
  `401 {"detail":"User not found in database"}` on `/mcp/` (only
  `PLATFORM_ADMIN_EMAIL` is exempt). The script creates the user
  (`POST /auth/email/admin/users`; the password, unused in proxy mode, must
  not contain the user name).
- A new user has `platform_viewer` (no `tools.execute`) plus `team_admin` of
  their personal team, which RBAC ignores on purpose: `tools/call` then
  answers **200** with the tool result `"Access denied"` (`isError: true`) —
  a fake-fast success if only status codes were checked. The script creates
  a global role with `tools.read` + `tools.execute` (`POST /rbac/roles`) and
  grants it (`POST /rbac/users/{email}/roles`).
- With `MCP_CLIENT_AUTH_ENABLED=false` and proxy trust on, the REST admin API
  ignores `Authorization: Bearer` (an admin JWT alone gets `401 Proxy
  authentication header required`); the admin is whoever the proxy header
  names, when that is `PLATFORM_ADMIN_EMAIL`.
- `/mcp/` is stateless by default (no `Mcp-Session-Id`, a new upstream
  session per call); `USE_STATEFUL_SESSIONS=true` with more than one worker
  answers `404 Session not found` when a request reaches another worker
  (ContextForge's session affinity needs Redis).
- Registration stores the upstream as `http://localhost:P/mcp` (it rewrites
  `127.0.0.1`); the tool is listed as `everything-echo`."""


def render_section(res):
    m = res.meta
    g50, g99 = res.latency_ratios()
    lines = [
        SECTION_INTRO,
        "",
        "### Results",
        "",
        f"- **Date:** {m.get('date', '?')}",
        f"- **Revision:** {m.get('revision', '?')}",
        f"- **Machine:** {machine()}",
        f"- **Command:** `{m.get('command', '?')}`",
        f"- **Client:** {m.get('wrk', '?')}",
        f"- **Versions:** mcp-contextforge-gateway {m.get('cf_version', '?')} (Python {m.get('python', '?')}; "
        f"uvicorn workers: (3) 1, (4) {m.get('cf_workers', '?')}); @modelcontextprotocol/server-everything "
        f"{m.get('everything_version', '?')} (Node {m.get('node', '?')}); mcp-gateway {m.get('gateway_version', '?')}; "
        f"{m.get('wrk_version', 'wrk')}",
        f"- **Load average:** {res.load_line()}",
        f"- **Other load benchmarks:** {m.get('others', '?')}",
        "",
        res.table(),
        "",
        "req/s, latencies and CPU are medians over the rounds; \"spread\" is half the range of the rounds' "
        "req/s over the median; \"requests\" and \"failed\" add up all rounds (warm-ups excluded).",
        "",
        "### Ratios",
        "",
    ]
    lines += [f"- {name}: **{value}**" for name, value in res.ratios()]
    lines += [f"- latency, ContextForge (3) / mcp-gateway (2): p50 **{g50}**, p99 **{g99}**", "", NOTES, ""]
    return "\n".join(lines)


def replace_section(path, section):
    text = path.read_text()
    start = text.find("\n## Optional: ContextForge")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        nxt = re.search(r"\n## ", text[start + 1:])
        end = start + 1 + nxt.start() + 1 if nxt else len(text)
        text = text[: start + 1] + section + ("\n" + text[end:] if nxt else "")
    tmp = path.with_suffix(".md.tmp-contextforge")
    tmp.write_text(text)
    tmp.replace(path)


def report(args):
    res = Results(Path(args.work))
    print()
    print(res.table())
    print()
    for name, value in res.ratios():
        print(f"{name}: {value}")
    g50, g99 = res.latency_ratios()
    print(f"latency, ContextForge (3) / mcp-gateway (2): p50 {g50}, p99 {g99}")
    print(f"Load average: {res.load_line()}")
    failed = {k: v for k, v in res.failures().items() if v}
    if failed:
        print(f"\nFAILED responses: {failed} (see the BENCH_FIRST_BAD lines in the wrk outputs)", file=sys.stderr)
        return 1
    if args.write:
        replace_section(Path(args.write), render_section(res))
        print(f"\nwrote the ContextForge section of {args.write}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("register")
    r.add_argument("--base", required=True)
    r.add_argument("--upstream", required=True)
    r.add_argument("--name", default="everything")
    r.add_argument("--admin-email", required=True)
    r.add_argument("--user", required=True)
    r.add_argument("--header", default="X-Authenticated-User")
    r.add_argument("--token", default="")
    s = sub.add_parser("sessions")
    s.add_argument("--url", required=True)
    s.add_argument("--header", action="append")
    s.add_argument("--count", type=int, default=1)
    s.add_argument("--tool")
    s.add_argument("--find-tool", default="echo")
    s.add_argument("--message-file", required=True)
    # The everything server answers "Echo: <message>"; the demo server the
    # message alone (the federation benchmark).
    s.add_argument("--expect", default="Echo: {message}",
                   help="the text the echo tool answers; {message} is the message")
    o = sub.add_parser("report")
    o.add_argument("work")
    o.add_argument("--write")
    args = p.parse_args()
    return {"register": register, "sessions": sessions, "report": report}[args.cmd](args) or 0


if __name__ == "__main__":
    sys.exit(main())
