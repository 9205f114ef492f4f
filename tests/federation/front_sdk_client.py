"""The official MCP Python SDK against the federation's MCP front.

Usage: front_sdk_client.py MCP_URL
Prints one JSON line with what it observed; the Rust test asserts on it.
"""
import asyncio
import json
import sys

from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client

url = sys.argv[1]


async def main():
    events = []

    async def on_progress(progress, total, message):
        events.append(f"progress {progress:g}")

    async with streamable_http_client(url) as (r, w, *_):
        async with ClientSession(r, w) as s:
            init = await s.initialize()
            tools, cursor, pages = [], None, 0
            while True:
                page = await s.list_tools(params=types.PaginatedRequestParams(cursor=cursor))
                pages += 1
                tools += [t.name for t in page.tools]
                cursor = page.next_cursor
                if not cursor:
                    break
            echo = await s.call_tool("alpha-echo", {"text": "from python"})
            await s.call_tool("alpha-progress", {}, progress_callback=on_progress)
            events.append("result")
            failed = await s.call_tool("beta-fail", {})
            print(json.dumps({
                "server": init.server_info.name,
                "tools": tools,
                "pages": pages,
                "echo": echo.content[0].text,
                "events": events,
                "failed_is_error": failed.is_error,
            }), flush=True)


asyncio.run(asyncio.wait_for(main(), 30))
