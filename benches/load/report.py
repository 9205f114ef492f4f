#!/usr/bin/env python3
"""Turns the raw results of benches/load/run.sh into tables: medians over the
rounds, ratios to the yardsticks (1)-(3), the latency the gateway adds at a
fixed rate, and its memory. With --write, also renders BENCHMARKS.md.

Reads from the run's work directory: throughput.tsv, rate.jsonl, rss.env,
instructions.jsonl, meta.env, loadavg.log (each present only if that part ran).
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

from bench_common import machine, ratio, read_env

GATEWAYS = ("4", "5", "6")
YARDSTICKS = ("3", "2", "1")


def median(values):
    return statistics.median(values) if values else None


def ms(us):
    return "–" if us is None else f"{us / 1000:.3f} ms"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


class Results:
    def __init__(self, work):
        self.meta = read_env(work / "meta.env")
        self.rss = read_env(work / "rss.env")
        self.names = {k[4:]: v for k, v in self.meta.items() if k.startswith("name")}
        self.tput = {}  # id -> {"rps": [...], "p50": [...], "p99": [...]}
        tsv = work / "throughput.tsv"
        if tsv.exists():
            for line in tsv.read_text().splitlines():
                tid, _round, rps, p50, p99 = line.split("\t")
                entry = self.tput.setdefault(tid, {"rps": [], "p50": [], "p99": []})
                entry["rps"].append(float(rps))
                entry["p50"].append(float(p50))
                entry["p99"].append(float(p99))
        self.rate = {}  # id -> list of loadgen JSON objects
        jsonl = work / "rate.jsonl"
        if jsonl.exists():
            for line in jsonl.read_text().splitlines():
                run = json.loads(line)
                self.rate.setdefault(run["label"], []).append(run)
        self.instructions = {}  # id -> {"requests": n, "ir": total}
        counted = work / "instructions.jsonl"
        if counted.exists():
            for line in counted.read_text().splitlines():
                run = json.loads(line)
                self.instructions[run["id"]] = run
        self.loads = []
        log = work / "loadavg.log"
        if log.exists():
            self.loads = [float(line.split()[0]) for line in log.read_text().splitlines() if line]

    def name(self, tid):
        return f"({tid}) {self.names.get(tid, '?')}"

    def tput_median(self, tid, key):
        return median(self.tput.get(tid, {}).get(key, []))

    def rate_median(self, tid, key):
        return median([run[key] for run in self.rate.get(tid, [])])

    # ------------------------------------------------------------ sections

    def throughput_section(self):
        if not self.tput:
            return None
        rows = []
        for tid in sorted(self.tput):
            rps = self.tput[tid]["rps"]
            spread = (max(rps) - min(rps)) / median(rps) * 100 if len(rps) > 1 else 0
            rows.append([
                self.name(tid),
                f"{median(rps):,.0f}",
                f"±{spread / 2:.0f} %",
                ms(self.tput_median(tid, "p50")),
                ms(self.tput_median(tid, "p99")),
                *(ratio(median(rps), self.tput_median(y, "rps")) for y in YARDSTICKS),
            ])
        return table(
            ["target", "req/s", "spread", "p50", "p99", "÷ (3)", "÷ (2)", "÷ (1)"], rows)

    def instructions_section(self):
        if not self.instructions:
            return None
        per = {tid: run["ir"] / run["requests"] for tid, run in self.instructions.items()}
        rows = [[self.name(tid), f"{run['requests']:,}", f"{per[tid]:,.0f}",
                 ratio(per[tid], per.get("3")),
                 "–" if "3" not in per else f"{per[tid] - per['3']:+,.0f}"]
                for tid, run in sorted(self.instructions.items())]
        return table(["target", "requests", "Ir/request", "÷ (3)", "− (3)"], rows)

    def headline_ratios(self):
        if not self.tput:
            return None
        r = lambda a, b: ratio(self.tput_median(a, "rps"), self.tput_median(b, "rps"))
        return "\n".join([
            f"- gateway proxy-mode / Pingora pass-through (4)/(3): **{r('4', '3')}**",
            f"- gateway JWT / Pingora pass-through (5)/(3): **{r('5', '3')}**",
            f"- gateway header-passthrough / Pingora pass-through (6)/(3): **{r('6', '3')}**",
            f"- Pingora pass-through with the gateway's four header edits / without (7)/(3): **{r('7', '3')}**",
            f"- gateway proxy-mode / pass-through with those edits (4)/(7): **{r('4', '7')}**",
            f"- gateway proxy-mode / nginx reverse proxy (4)/(2): **{r('4', '2')}**",
            f"- Pingora pass-through / nginx reverse proxy (3)/(2): **{r('3', '2')}**",
        ])

    def rate_section(self):
        if not self.rate:
            return None
        rows = []
        for tid in sorted(self.rate):
            rows.append([
                self.name(tid),
                f"{self.rate_median(tid, 'achieved_rps'):,.0f}",
                *(f"{self.rate_median(tid, k):,.0f}" for k in
                  ("p50_us", "p90_us", "p99_us", "max_us")),
                sum(run["non200"] + run["errors"] for run in self.rate[tid]),
            ])
        return table(["target", "achieved req/s", "p50 µs", "p90 µs", "p99 µs", "max µs",
                      "non-200 + errors"], rows)

    def added_latency_section(self):
        if not self.rate:
            return None
        rows = []
        for tid in GATEWAYS:
            if tid not in self.rate:
                continue
            row = [self.name(tid)]
            for base in ("1", "3"):
                for key in ("p50_us", "p99_us"):
                    a, b = self.rate_median(tid, key), self.rate_median(base, key)
                    row.append("–" if a is None or b is None else f"{a - b:+,.0f}")
            rows.append(row)
        return table(["gateway", "p50 over (1) µs", "p99 over (1) µs",
                      "p50 over (3) µs", "p99 over (3) µs"], rows)

    def idle_rss_line(self, key, what):
        idle = int(self.rss[f"{key}_idle_kb"])
        line = f"- {what}: idle after start **{idle / 1024:.1f} MiB**"
        if f"{key}_conns_kb" in self.rss:
            conns = int(self.rss[f"{key}_conns_kb"])
            opened = json.loads(self.rss.get(f"{key}_holder") or "{}").get("open", 0)
            per = (conns - idle) / opened if opened else 0
            line += (f"; with {opened:,} idle keep-alive connections "
                     f"({self.rss.get(f'{key}_established', '?')} established at its end when read) "
                     f"**{conns / 1024:.1f} MiB**, i.e. **{per:.1f} KiB per connection**")
        return line

    def rss_section(self):
        if "gw_idle_kb" not in self.rss:
            return None
        lines = [self.idle_rss_line("gw", "gateway (fresh, proxy mode)")]
        if "pt_idle_kb" in self.rss:
            lines.append(self.idle_rss_line("pt", "Pingora pass-through (3) (fresh), for comparison"))
        if "after_load_kb" in self.rss:
            lines.append(
                f"- gateway (4) after the throughput and rate runs: "
                f"{int(self.rss['after_load_kb']) / 1024:.1f} MiB "
                f"(peak VmHWM {int(self.rss['after_load_hwm_kb']) / 1024:.1f} MiB)")
        lines.append("\nEach idle connection completed one request first (`GET /health` on the "
                     "gateway, `GET /mcp` proxied on the pass-through) and then stays open, "
                     "idle, within the keep-alive timeout (the gateway's `KEEPALIVE_TIMEOUT`, 75 s; "
                     "Pingora's 60 s for the pass-through).")
        return "\n".join(lines)

    def load_line(self):
        during = ""
        if self.loads:
            during = (f"; during the run (1-min average sampled before each measurement, "
                      f"the benchmark's own processes included): "
                      f"median {median(self.loads):.2f}, max {max(self.loads):.2f}")
        return (f"before the run {self.meta.get('load_before', '?')} (1/5/15 min){during}; "
                f"after {self.meta.get('load_after', '?')}")

    def problems(self):
        bad = [f"({tid}) {run['non200']} non-200, {run['errors']} errors"
               for tid, runs in self.rate.items() for run in runs
               if run["non200"] or run["errors"]]
        return bad


def print_report(res):
    sections = [
        ("Throughput (medians over the rounds; ÷ = req/s ratio)", res.throughput_section()),
        ("Ratios", res.headline_ratios()),
        ("Fixed rate (medians over the rounds)", res.rate_section()),
        ("Latency the gateway adds at the fixed rate (medians)", res.added_latency_section()),
        ("Gateway memory (VmRSS)", res.rss_section()),
        ("User-space instructions per request (callgrind)", res.instructions_section()),
    ]
    for title, body in sections:
        if body:
            print(f"\n## {title}\n\n{body}")
    print(f"\nLoad average: {res.load_line()}")
    print(f"Machine: {machine()}")


TEMPLATE = """# Load benchmark

How much a call through the gateway costs next to the same call through
nginx and through a Pingora proxy that does nothing. `make bench-load` runs
everything below in one go and rewrites the "Results" section of this file;
the figures are from one machine and only mean something next to each other.

```bash
make bench-load                     # throughput, fixed rate, RSS, streams, federation; writes BENCHMARKS.md (~15 min)
MODE=federation benches/load/run.sh # /tools/invoke, virtual servers, /mcp; GET /tools at 1,000 x 100 tools
make bench-load-smoke               # 1 short round of everything: does it still run? (no figures)
MODE=streams STREAMS=1000 make bench-load   # memory per open event stream, ~2 min
MODE=rate RATE=5000 benches/load/run.sh
DURATION=30s CONNECTIONS=128 ROUNDS=5 make bench-load
```

Settings (environment): `MODE` (`full`, `throughput`, `rate`, `rss`, `smoke`,
`streams`: open event streams, printed only, see "Open streams" below;
`federation`: its own section, "Federation (issue 9)" below),
`DURATION`, `CONNECTIONS`, `THREADS`, `ROUNDS`, `WARMUP` (wrk), `RATE`,
`RATE_DURATION`, `RATE_CONNECTIONS` (loadgen), `IDLE_CONNECTIONS` (RSS),
`STREAMS`, `STREAM_SETTLE`, `STREAM_MEASURE` (streams),
`SKIP_BUILD=1`, `KEEP_TMP=1` (keep the work directory with every raw output),
`WRITE_RESULTS=0|1`, `SETTLE_SECONDS` (how long to let the load average of
the build decay before measuring, default 60). The script installs `wrk` and `nginx` if they are missing.

## What runs

All on loopback. The upstream is nginx with one worker answering every
request with `return 200` and a fixed JSON-RPC reply (`application/json`), so
the upstream costs as little as possible and the proxies' own cost shows.

| # | target | what it does |
|---|---|---|
| (1) | nginx upstream (direct) | the floor: no proxy at all |
| (2) | nginx reverse proxy | 2 workers, `proxy_http_version 1.1`, upstream `keepalive 64`, `proxy_set_header Connection ""` |
| (3) | Pingora pass-through | [`examples/passthrough.rs`](examples/passthrough.rs): 401 unless `X-Authenticated-User`, else forward to a fixed `HttpPeer`; threads = CPUs |
| (7) | Pingora pass-through + header edits | (3) with `--forwarded-headers`: also sets `Host`, `X-Forwarded-For`, `-Proto`, `-Host` upstream, the edits every gateway request must make |
| (4) | gateway, proxy header | `MCP_CLIENT_AUTH_ENABLED=false TRUST_PROXY_AUTH=true`, `X-Authenticated-User`, route `/servers/bench/mcp` |
| (5) | gateway, JWT HS256 | `MCP_CLIENT_AUTH_ENABLED=true`, 40-byte `JWT_SECRET_KEY`, `Authorization: Bearer` (sub + exp) |
| (6) | gateway, proxy + header passthrough | (4) plus `ENABLE_HEADER_PASSTHROUGH=true DEFAULT_PASSTHROUGH_HEADERS='["X-Tenant-Id"]'`, sending `X-Tenant-Id` and `X-Upstream-Authorization: Bearer x` |

The gateways run with `LOG_LEVEL=warn SHUTDOWN_DRAIN_SECONDS=0`, from a
temporary directory with a clean environment (no `.env`, no `RUST_LOG`).

- **Throughput:** wrk with keep-alive, the same ~1 KiB JSON-RPC `tools/call`
  POST (`Content-Type: application/json`, `Accept: application/json,
  text/event-stream`) plus the target's credential, same threads, connections
  and duration for every target. Rounds alternate the targets and start each
  round at a different one; the table shows medians. Before anything is timed
  every target must answer 200 *with the upstream's reply* (a 401 or 404 would
  be a fake-fast result), and wrk's Lua `response()` counts non-200 answers:
  any non-200 or socket error fails the run.
- **Fixed rate:** [`examples/loadgen.rs`](examples/loadgen.rs), an open-loop
  generator: requests scheduled at fixed intervals over keep-alive
  connections, latency counted from the scheduled time when the connection
  was still busy (no coordinated omission), from the actual send otherwise
  (the generator's timer slack is not the server's). The interesting figure
  is what the gateway adds over (1) and over (3) when nothing is saturated;
  the client's own time on the same machine is in every row alike.
- **Memory:** VmRSS of a freshly started gateway, idle, then holding
  10,000 idle keep-alive connections that have each completed one
  `GET /health` ([`benches/load/idle_conns.py`](benches/load/idle_conns.py)).

**Caveat:** client, proxy and upstream share the machine's CPUs. On 2 cores
wrk (2 threads), the proxy (2 threads) and the upstream (1 worker) compete,
so absolute req/s are far below what a proxy does on its own machine;
compare the rows with each other, and check the load average below: other
work on the machine during the run makes every figure noisier.

## Results

{results}

## Optional: ContextForge

Not measured yet: run `benches/load/contextforge.sh`, which writes this section.
"""


def render(res):
    parts = [
        f"- **Date:** {res.meta.get('date', '?')}",
        f"- **Revision:** {res.meta.get('revision', '?')}",
        f"- **Machine:** {machine()}",
        f"- **Command:** `{res.meta.get('command', '?')}` (mode `{res.meta.get('mode', '?')}`)",
        f"- **Client settings:** {res.meta.get('wrk', '?')}; {res.meta.get('loadgen', '?')}",
        f"- **Load average:** {res.load_line()}",
    ]
    body = "\n".join(parts)
    for title, section in [
        ("Throughput", res.throughput_section()),
        (None, "req/s medians; \"spread\" is half the range of the rounds over the median; "
               "\"÷ (n)\" divides the row's req/s by target (n)'s."
         if res.tput else None),
        ("Ratios", res.headline_ratios()),
        ("Fixed rate", res.rate_section()),
        ("Latency the gateway adds at the fixed rate", res.added_latency_section()),
        ("Gateway memory (VmRSS)", res.rss_section()),
    ]:
        if not section:
            continue
        body += f"\n\n### {title}\n\n{section}" if title else f"\n\n{section}"
    return TEMPLATE.replace("{results}", body)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("work", type=Path)
    p.add_argument("--write", type=Path, help="render BENCHMARKS.md to this path")
    args = p.parse_args()
    res = Results(args.work)
    print_report(res)
    problems = res.problems()
    if problems:
        print("\nFAILED: " + "; ".join(problems), file=sys.stderr)
        return 1
    if args.write:
        text = render(res)
        # The ContextForge section is written by contextforge.sh; keep it.
        marker = "## Optional: ContextForge"
        if args.write.exists():
            old = args.write.read_text()
            if marker in old:
                text = text[: text.index(marker)] + old[old.index(marker):]
        args.write.write_text(text)
        print(f"\nwrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
