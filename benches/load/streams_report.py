#!/usr/bin/env python3
"""Prints the streams part of the load benchmark (benches/load/run.sh,
MODE=streams): memory per open event stream of each target, its ratio to
nginx's, and the delay of each event from the demo server to the client,
with what each proxy adds to the direct figure. Reads the run's streams.env.
"""
import json
import sys
from pathlib import Path

from bench_common import machine, ratio, read_env

TARGETS = [
    ("direct", "demo server directly (axum)"),
    ("nginx", "nginx, `proxy_buffering off`"),
    ("pingora", "bare Pingora pass-through"),
    ("before", "the gateway, GATEWAY_BEFORE build"),
    ("gateway", "the gateway (proxy-header mode)"),
]


def main():
    env = read_env(Path(sys.argv[1]))
    n = int(env.get("streams", "0"))
    base = int(env.get("baseline", "0"))
    rows, per, measured = [], {}, {}
    for key, _ in TARGETS:
        if f"{key}_measured" not in env:
            continue
        # From the RSS with the baseline batch open when there is one.
        start = int(env.get(f"{key}_baseline_kb", env[f"{key}_idle_kb"]))
        per[key] = (int(env[f"{key}_streams_kb"]) - start) / n if n else None
        measured[key] = json.loads(env[f"{key}_measured"])
    direct = measured.get("direct", {})
    for key, name in TARGETS:
        if key not in measured:
            continue
        m = measured[key]
        added = "–"
        if key != "direct" and direct:
            added = (f"{(m['p50_us'] - direct['p50_us']) / 1000:+.2f} / "
                     f"{(m['p99_us'] - direct['p99_us']) / 1000:+.2f}")
        rows.append([
            name,
            f"{int(env[f'{key}_idle_kb']) / 1024:.1f} MiB",
            *([f"{int(env[f'{key}_baseline_kb']) / 1024:.1f} MiB"] if base else []),
            f"{int(env[f'{key}_streams_kb']) / 1024:.1f} MiB",
            f"**{per[key]:.1f} KiB**",
            ratio(per[key], per.get("nginx")),
            f"{env.get(f'{key}_established', '?').strip()} / {env.get(f'{key}_upstream', '?').strip()}",
            f"{m['p50_us'] / 1000:.2f} / {m['p99_us'] / 1000:.2f}",
            added,
            f"{m['delivered']:.3f}",
        ])
    held = [f"RSS, {base} baseline streams", f"RSS, + {n} streams"] if base else [f"RSS, {n} streams"]
    header = ["target", "RSS idle", *held, "per open stream",
              "÷ nginx", "conns client / upstream", "event delay p50 / p99 (ms)",
              "added vs direct (ms)", "events delivered"]
    kind = {"get": "GET", "post": "POST-answered", "sse": "legacy /sse"}.get(env.get("kind", "get"), "GET")
    print(f"\n## Open streams: {n} {kind} event streams per target, "
          f"settle {env.get('settle')} s, measured over {env.get('measure')} s\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    start = "RSS with the baseline streams open" if base else "RSS idle"
    print(f"\nPer open stream: (RSS holding the streams − {start}) / streams, all "
          "processes of the target (nginx: master + 2 workers). Event delay: from "
          "the demo server's send time in the event to the client's receipt; on a "
          "shared 2-core machine it is noisy, memory is not.")
    print(f"Machine: {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
