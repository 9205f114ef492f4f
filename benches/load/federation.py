#!/usr/bin/env python3
"""Helpers of the federation benchmark (benches/load/federation.sh, run.sh
MODE=federation; standard library only).

  wait-tools  polls GET /tools (every page) until it lists --count available
              tools; prints the count
  last-name   the name of the last tool on the page at --url (the marker a
              full page must carry)
  report      medians over the rounds, the issue's ratios, the catalog's
              memory; prints them and, with --write, replaces the
              "Federation" section of BENCHMARKS.md (and nothing else).
              --placeholder renders that section without figures.
"""
import argparse
import json
import re
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench_common import machine, ratio, read_env

HEADING = "## Federation (issue 9)"
CALLS = ("a", "n", "b", "c", "d", "e", "f", "g")
CATALOG = ("t100", "t1000")
# (numerator, denominator, what, the floor or None)
RATIOS = (
    ("c", "a", "/tools/invoke ÷ direct tools/call on a held session (c)/(a)", 0.8),
    ("d", "b", "virtual server ÷ the server's plain route (d)/(b)", 0.8),
    ("e", "b", "/mcp ÷ the server's plain route (e)/(b)", None),
    ("b", "a", "plain route ÷ direct (b)/(a)", None),
    ("n", "a", "nginx reverse proxy ÷ direct (n)/(a): a proxy hop's cost on this machine", None),
    ("c", "n", "/tools/invoke ÷ the same call through nginx (c)/(n)", None),
    ("b", "n", "plain route ÷ nginx (b)/(n)", None),
    ("c", "g", "this gateway's /tools/invoke ÷ ContextForge's /rpc (c)/(g)", None),
    ("f", "g", "this gateway's /rpc ÷ ContextForge's /rpc (f)/(g)", None),
)


def get(url, headers):
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    for line in headers or ():
        name, _, value = line.partition(":")
        req.add_header(name.strip(), value.strip())
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.headers, json.loads(resp.read())


def available_tools(url, headers):
    count, cursor = 0, None
    while True:
        page_url = f"{url}?limit=1000" + (f"&cursor={cursor}" if cursor else "")
        hdrs, items = get(page_url, headers)
        count += sum(1 for item in items if item.get("available"))
        cursor = hdrs.get("X-Next-Cursor")
        if not cursor:
            return count


def wait_tools(args):
    deadline = time.monotonic() + args.timeout
    count = -1
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            count = available_tools(args.url, args.header)
        except (urllib.error.URLError, OSError, ValueError) as err:
            print(f"wait-tools: {err}", file=sys.stderr)
        if count >= args.count:
            print(count)
            return 0
        # Every page costs the gateway the whole catalog's filtering: a
        # poll at most every other moment, so the gathering is not slowed.
        time.sleep(max(1.0, 2 * (time.monotonic() - started)))
    print(f"wait-tools: {count} available tools after {args.timeout} s, {args.count} expected",
          file=sys.stderr)
    return 1


def last_name(args):
    _, items = get(args.url, args.header)
    if not items:
        print("last-name: an empty page", file=sys.stderr)
        return 1
    print(items[-1]["name"])
    return 0


# ------------------------------------------------------------------- report


def ms(us):
    return "–" if us is None else f"{us / 1000:.2f} ms"


class Results:
    def __init__(self, work):
        self.env = read_env(work / "federation.env")
        self.rows = {}  # key -> list of (rps, p50, p99, requests)
        tsv = work / "federation.tsv"
        if tsv.exists():
            for line in tsv.read_text().splitlines():
                key, _round, rps, p50, p99, requests, upstream = line.split("\t")
                self.rows.setdefault(key, []).append(
                    {"rps": float(rps), "p50": float(p50), "p99": float(p99), "requests": int(requests),
                     "upstream": int(upstream)})

    def med(self, key, field):
        vals = [r[field] for r in self.rows.get(key, [])]
        return statistics.median(vals) if vals else None

    @staticmethod
    def per_request(rows):
        done = sum(r["requests"] for r in rows)
        return "–" if not done else f"{sum(r['upstream'] for r in rows) / done:.2f}"

    def table(self, keys):
        head = ["target", "req/s", "spread", "p50", "p99", "requests", "upstream MCP requests per request"]
        out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for key in keys:
            rows = self.rows.get(key)
            if not rows:
                continue
            rps = [r["rps"] for r in rows]
            spread = "–" if len(rps) < 2 else f"±{(max(rps) - min(rps)) / 2 / statistics.median(rps) * 100:.0f} %"
            out.append("| " + " | ".join([
                f"({key}) {self.env.get('name_' + key, '?')}",
                f"{statistics.median(rps):,.0f}", spread,
                ms(self.med(key, "p50")), ms(self.med(key, "p99")),
                f"{sum(r['requests'] for r in rows):,}",
                self.per_request(rows),
            ]) + " |")
        return "\n".join(out) if len(out) > 2 else None

    def ratios(self):
        out = []
        for num, den, what, floor in RATIOS:
            a, b = self.med(num, "rps"), self.med(den, "rps")
            if a is None or b is None:
                continue
            value = ratio(a, b)
            verdict = "" if floor is None else (
                f" (the issue asks ≥ {floor:.1f}: {'met' if a / b >= floor else 'NOT met'})")
            out.append(f"- {what}: **{value}**{verdict}")
        return "\n".join(out) or None

    def memory(self):
        env = self.env
        if "cat_before_kb" not in env or "cat_after_kb" not in env:
            return None
        servers, tools = int(env.get("servers", 0)), int(env.get("tools", 0))
        before, after = int(env["cat_before_kb"]), int(env["cat_after_kb"])
        total = servers * tools
        per_tool = (after - before) * 1024 / total if total else 0
        lines = [
            f"- {servers:,} servers registered, nothing gathered (every server at a port where nothing "
            f"listens): **{before / 1024:.1f} MiB**",
            f"- the whole catalog gathered ({servers:,} × {tools} = {total:,} tools, and the gateway's "
            f"own session to each server held open for `list_changed`: "
            f"{env.get('cat_upstream_conns', '?')} connections to the upstream): **{after / 1024:.1f} MiB**",
            f"- the catalog and its sessions: **{(after - before) / 1024:.1f} MiB**, "
            f"{per_tool:,.0f} bytes per tool",
            f"- gathered in {env.get('cat_gathered_s', '?')} s after the SIGHUP that pointed the servers "
            f"at the demo server (16 servers at a time)",
        ]
        if "cat_loaded_kb" in env:
            lines.append(f"- after the `GET /tools` load: {int(env['cat_loaded_kb']) / 1024:.1f} MiB "
                         f"(peak VmHWM {int(env.get('cat_hwm_kb', 0)) / 1024:.1f} MiB)")
        return "\n".join(lines)

    def sections(self):
        return [
            ("One tools/call of echo through each target (medians over the rounds)", self.table(CALLS)),
            ("Ratios", self.ratios()),
            (f"GET /tools at {int(self.env.get('servers', 0)):,} servers × {self.env.get('tools', '?')} tools",
             self.table(CATALOG)),
            ("Gateway memory (VmRSS)", self.memory()),
        ]


SECTION_INTRO = HEADING + """

`MODE=federation benches/load/run.sh` (part of `make bench-load`; a small
version runs in `make bench-load-smoke`) measures the federation endpoints
against the demo MCP server (`src/bin/mcp-demo-server.rs`) as the upstream,
in one run, every target with the same wrk script
([`benches/load/federation.lua`](benches/load/federation.lua)) and the same
threads, connections and duration as the throughput runs above:

| # | target | request |
|---|---|---|
| (a) | the demo server, direct | `POST /mcp` `tools/call` of `echo` on a held MCP session |
| (n) | nginx | the same through nginx as a plain reverse proxy (two workers, keep-alive upstream pool): what one proxy hop costs on this machine |
| (b) | the gateway's plain route | the same at `/servers/demo/mcp` |
| (c) | `/tools/invoke` | `POST /tools/invoke/demo-echo` `{"arguments": {"message": …}}`, no session |
| (d) | a virtual server | the same `tools/call` at `/servers/demo-only/mcp` (`include: [demo/*]`) |
| (e) | `/mcp` | the same `tools/call` at `/mcp`, the virtual server of everything |
| (t100) | the catalog | `GET /tools` (default page: 100 tools) with 1,000 servers × 100 tools |
| (t1000) | the catalog | `GET /tools?limit=1000` |
| (f) | this gateway's `/rpc` | `POST /rpc` `tools/call` of `demo-echo`, no session (with `COMPARE_CONTEXTFORGE=1`) |
| (g) | ContextForge's `/rpc` | the same through ContextForge, the demo server registered with `POST /gateways` (with `COMPARE_CONTEXTFORGE=1`) |

- **Held sessions:** per wrk thread one MCP session, opened before
  anything is timed (`initialize`, `notifications/initialized`, `tools/list`
  to find the tool's name there, one checked call:
  [`mcp_helper.py`](benches/load/contextforge/mcp_helper.py) `sessions`); the
  load then reuses its `Mcp-Session-Id`, with a fresh JSON-RPC id per request.
- **Checked:** every response must be a 200 that carries its marker: the
  echo message (900 characters with a per-run random marker) for (a)-(e),
  the name of the page's last tool for (t100)/(t1000), so an error, a tool
  error or a short page is a failure, not a fast answer. Any failure fails
  the run.
- **Upstream MCP requests per request:** the demo server's own count
  (`/healthz` `mcp_requests`) over each measurement, divided by the
  requests wrk completed: 1.00 for a call on a held upstream session, more
  when the gateway opens upstream sessions (`initialize`,
  `notifications/initialized`, the GET stream, `DELETE`) for calls, 0 for
  `GET /tools`, which the catalog answers without an upstream call.
- **The gateway** runs in proxy-header mode (`X-Authenticated-User`), as in
  (4) above, `LOG_LEVEL=warn`, from a clean environment; the issue asks
  (c)/(a) ≥ 0.8 and (d)/(b) ≥ 0.8.
- **The catalog:** one demo server process stands for all 1,000 servers
  (`/s/sNNNN/mcp`, `--extra-tools 98` beside `echo` and `whoami`: 100 tools
  each, shaped like real ones; `--quiet-streams`: the GET stream the gateway
  holds to each server carries no ticks). The gateway starts with the 1,000
  servers at a port where nothing listens (registered, nothing gathered: the
  "before" VmRSS), then SIGHUP points them at the demo server; `/tools` is
  polled until it lists all 100,000 tools, and VmRSS is read again.
  [`examples/catalog_memory.rs`](examples/catalog_memory.rs) measures the
  catalog's data structure alone.
- **Catalog memory and gathering time (debug build, not a result):** at
  200 servers × 100 tools (`MODE=federation FED_PARTS=catalog SKIP_BUILD=1
  BIN_DIR=target/debug FED_SERVERS=200 FED_DURATION=1s FED_WARMUP=0 ROUNDS=1
  SETTLE_SECONDS=0 benches/load/run.sh`) the catalog and its sessions took
  302.6 MiB and 12.5 s to gather before a session's HTTP client was shared,
  119.0 MiB and 9.3 s after. Beyond the tool data (3,698 bytes per tool,
  `catalog_memory`), that is 1.16 MiB per server before, 0.24 MiB after.
  heaptrack put 170 of the 187 MiB heap peak in OpenSSL's
  `SslConnector::builder` (the system CA bundle, parsed for every session's
  own `reqwest::Client`); what is left per server is the gateway's held
  session (its GET stream and an idle keep-alive connection: 2 connections
  per server) and allocator slack. At 1,000 servers (`FED_SERVERS=1000`,
  same command) after: 536.0 MiB (0.18 MiB per server beyond the data) and
  39.0 s, against ~1.1 MiB per server and 607 s measured before.
- **ContextForge** (optional, `COMPARE_CONTEXTFORGE=1`): PyPI
  `mcp-contextforge-gateway` 1.0.7, installed once into `CF_VENV`
  (`target/tmp/contextforge-venv`), started in proxy-header mode with the
  settings of "Optional: ContextForge" above and one uvicorn worker; the
  demo server is registered through its REST API and called as
  `demo-echo` through its `/rpc`, next to (c) and (f) in the same run.
- Settings: `FED_SERVERS` (1000), `FED_TOOLS` (100), `FED_TARGETS`
  (`a n b c d e`), `FED_PARTS` (`calls catalog`: either may be left out),
  `FED_CATALOG_WAIT` (600 s), `COMPARE_CONTEXTFORGE` (0),
  `CF_VENV`, `FED_DURATION` and `FED_WARMUP` (`0`: none; both default to
  `DURATION` and `WARMUP`); wrk's `CONNECTIONS`, `THREADS`, `ROUNDS` as
  above. `WRITE_RESULTS=1` (the default in
  `full` mode) rewrites this section."""

PLACEHOLDER = """### Results

To be measured: a release run of `make bench-load` (or
`MODE=federation WRITE_RESULTS=1 benches/load/run.sh`) writes the figures
here. No figures from debug builds."""


def render_section(res):
    if not res.rows:
        return SECTION_INTRO + "\n\n" + PLACEHOLDER + "\n"
    meta = res.env
    lines = [
        SECTION_INTRO, "", "### Results", "",
        f"- **Date:** {meta.get('date', '?')}",
        f"- **Revision:** {meta.get('revision', '?')}",
        f"- **Machine:** {machine()}",
        f"- **Command:** `{meta.get('command', '?')}` (mode `{meta.get('mode', '?')}`)",
        f"- **Client:** {res.env.get('wrk', '?')}",
        f"- **Load average:** before the run {meta.get('load_before', '?')}, after {meta.get('load_after', '?')}",
    ]
    for title, body in res.sections():
        if body:
            lines += ["", f"#### {title}", "", body]
    return "\n".join(lines) + "\n"


def replace_section(path, section):
    """Replaces the section under HEADING (to the next `## `), or appends it."""
    text = path.read_text() if path.exists() else ""
    start = text.find("\n" + HEADING + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        nxt = re.search(r"\n## ", text[start + 1:])
        end = start + 1 + nxt.start() + 1 if nxt else len(text)
        text = text[: start + 1] + section + ("\n" + text[end:] if nxt else "")
    tmp = path.with_suffix(".md.tmp-federation")
    tmp.write_text(text)
    tmp.replace(path)


def report(args):
    res = Results(Path(args.work))
    if not args.placeholder:
        for title, body in res.sections():
            if body:
                print(f"\n## {title}\n\n{body}")
        print(f"\nMachine: {machine()}")
    if args.write:
        replace_section(Path(args.write), render_section(res))
        print(f"\nwrote the federation section of {args.write}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wait-tools")
    w.add_argument("--url", required=True)
    w.add_argument("--header", action="append")
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--timeout", type=float, default=600)
    n = sub.add_parser("last-name")
    n.add_argument("--url", required=True)
    n.add_argument("--header", action="append")
    r = sub.add_parser("report")
    r.add_argument("work")
    r.add_argument("--write")
    r.add_argument("--placeholder", action="store_true", help="no figures: the section's description only")
    args = p.parse_args()
    return {"wait-tools": wait_tools, "last-name": last_name, "report": report}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
