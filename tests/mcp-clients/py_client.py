"""The official Python MCP SDK (`mcp`) as a Streamable HTTP client against
one MCP endpoint: the gateway's, or an upstream's directly. The same checks
as ts_client.mjs, with the same output, so the Rust test asserts both alike.

Usage: py_client.py URL USER [CHECKS] [PREFIX]
  URL     the Streamable HTTP endpoint
  USER    sent as X-Authenticated-User
  CHECKS  comma list out of list,echo,progress,sampling,cancel (default: all)
  PREFIX  put before every tool name the checks call (virtual servers)
Prints one JSON object on stdout; exits 1 with the reason on stderr.
"""
import json
import sys
import time
import traceback

import anyio
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

CANNED = "canned answer from the Python client"


def text(result):
    return "".join(getattr(c, "text", "") for c in result.content)


async def run(url, user, checks, prefix):
    started = time.monotonic()

    def now():
        return round((time.monotonic() - started) * 1000)

    sampling_requests = 0

    async def sampling(context, params):
        nonlocal sampling_requests
        sampling_requests += 1
        return types.CreateMessageResult(
            model="canned-model",
            role="assistant",
            content=types.TextContent(type="text", text=CANNED),
            stop_reason="endTurn",
        )

    long_tool = f"{prefix}trigger-long-running-operation"
    out = {}
    http = create_mcp_http_client(headers={"X-Authenticated-User": user})
    async with streamable_http_client(url, http_client=http) as (read, write, *_):
        async with ClientSession(read, write, sampling_callback=sampling) as s:
            init = await s.initialize()
            out["server"] = init.server_info.name

            if "list" in checks:
                names, cursor = [], None
                while True:
                    page = await s.list_tools(cursor=cursor) if cursor else await s.list_tools()
                    names += [t.name for t in page.tools]
                    cursor = page.next_cursor
                    if not cursor:
                        break
                out["tools"] = sorted(names)

            if "echo" in checks:
                out["echo"] = text(await s.call_tool(f"{prefix}echo", {"message": "hello"}))

            if "progress" in checks:
                # As in ts_client.mjs: an echo sent when the first progress
                # arrives must answer before the long call's result.
                events, order = [], []
                async with anyio.create_task_group() as tg:

                    async def meanwhile():
                        r = await s.call_tool(f"{prefix}echo", {"message": "meanwhile"})
                        order.append(f"echo {text(r)}")

                    async def on_progress(progress, total, message):
                        events.append({"progress": progress, "total": total, "at_ms": now()})
                        order.append(f"progress {progress:g}")
                        if len(events) == 1:
                            tg.start_soon(meanwhile)

                    result = await s.call_tool(
                        long_tool, {"duration": 5, "steps": 5}, progress_callback=on_progress
                    )
                    order.append("result")
                    result_at = now()
                out["progress"] = {
                    "events": events,
                    "result_at_ms": result_at,
                    "order": order,
                    "result": text(result),
                }

            if "sampling" in checks:
                r = await s.call_tool(
                    f"{prefix}trigger-sampling-request", {"prompt": "say something", "maxTokens": 20}
                )
                out["sampling"] = {"result": text(r), "requests": sampling_requests, "canned": CANNED}

            if "cancel" in checks:
                # The caller's cancel scope, cancelled once the first progress
                # has arrived: the SDK sends notifications/cancelled upstream.
                seen = 0
                error = None
                t0 = now()
                with anyio.CancelScope() as scope:

                    async def cancel_on_progress(progress, total, message):
                        nonlocal seen
                        seen += 1
                        scope.cancel()

                    await s.call_tool(
                        long_tool, {"duration": 60, "steps": 60}, progress_callback=cancel_on_progress
                    )
                if scope.cancelled_caught:
                    error = "cancelled by the caller's cancel scope"
                after = text(await s.call_tool(f"{prefix}echo", {"message": "after cancel"}))
                out["cancel"] = {
                    "error": error,
                    "progress_seen": seen,
                    "cancelled_after_ms": now() - t0,
                    "echo_after": after,
                }
    return out


def main():
    if len(sys.argv) < 3:
        print("usage: py_client.py URL USER [CHECKS] [PREFIX]", file=sys.stderr)
        sys.exit(2)
    url, user = sys.argv[1], sys.argv[2]
    checks = set((sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else "list,echo,progress,sampling,cancel").split(","))
    prefix = sys.argv[4] if len(sys.argv) > 4 else ""
    try:
        out = anyio.run(run, url, user, checks, prefix)
    except BaseException:
        print(f"py_client: {url}:\n{traceback.format_exc()}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(out), flush=True)


main()
