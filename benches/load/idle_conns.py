#!/usr/bin/env python3
"""Opens N keep-alive connections to an HTTP server, completes one request on
each (GET /health by default) and then holds them all open and idle, so the
server's memory per idle connection can be read (benches/load/run.sh).

Prints one JSON line when every connection is established, then holds them
until it receives SIGTERM/SIGINT or --hold seconds pass.
"""
import argparse
import asyncio
import json
import resource
import signal
import sys


async def open_one(host, port, request, sem, conns, failures):
    async with sem:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            if status != 200:
                failures.append(f"status {status}")
            conns.append(writer)
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            failures.append(repr(e))


async def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--path", default="/health")
    p.add_argument("--header", action="append", default=[],
                   help="extra request header, 'Name: value' (repeatable)")
    p.add_argument("--hold", type=float, default=120.0)
    p.add_argument("--parallel", type=int, default=256,
                   help="connections being opened at once (the listen backlog is finite)")
    args = p.parse_args()

    # Each connection is one file descriptor here too.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.count + 1024), hard))

    extra = "".join(f"{h}\r\n" for h in args.header)
    request = f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n{extra}\r\n".encode()
    sem = asyncio.Semaphore(args.parallel)
    conns, failures = [], []
    await asyncio.gather(*(open_one(args.host, args.port, request, sem, conns, failures)
                           for _ in range(args.count)))
    print(json.dumps({"requested": args.count, "open": len(conns), "failed": len(failures),
                      "first_failure": failures[0] if failures else None}), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), args.hold)
    except asyncio.TimeoutError:
        pass
    for w in conns:
        w.close()
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
