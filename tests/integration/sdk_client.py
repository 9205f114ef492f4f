"""A real MCP client (the official Python SDK) through the gateway.

Usage: sdk_client.py GATEWAY_URL SERVER USER
Prints one JSON line with what it observed; the Rust test asserts on it.
"""
import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

base, server, user = sys.argv[1:4]
headers = {"X-Authenticated-User": user}


async def streamable():
    client = create_mcp_http_client(headers=headers)
    async with streamable_http_client(f"{base}/servers/{server}/mcp", http_client=client) as (r, w, *_):
        async with ClientSession(r, w) as s:
            await s.initialize()
            tools = sorted(t.name for t in (await s.list_tools()).tools)
            echo = (await s.call_tool("echo", {"message": "hello"})).content[0].text
            who = [json.loads((await s.call_tool("whoami", {})).content[0].text) for _ in range(3)]
            return {
                "tools": tools,
                "echo": echo,
                "replicas": sorted({w["server"] for w in who}),
                "identity": who[0]["headers"].get("x-authenticated-user"),
                "authorization": who[0]["headers"].get("authorization"),
            }


async def legacy():
    async with sse_client(f"{base}/servers/{server}/sse", headers=headers) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            return (await s.call_tool("echo", {"message": "legacy"})).content[0].text


async def main():
    out = await streamable()
    out["legacy_echo"] = await legacy()
    print(json.dumps(out), flush=True)


asyncio.run(asyncio.wait_for(main(), 30))
