#!/usr/bin/env python3
"""Drives Lifeboat's MCP server with the official MCP Python SDK, as an AI agent would: lists
the tools, then makes the calls given as JSON on stdin ([{"tool": ..., "arguments": {...}}]),
and prints one JSON report: {"server": ..., "instructions": ..., "tools": [{name, description}],
"calls": [{"tool", "is_error", "text", "structured"}]}.

    mcp_client.py stdio LIFEBOAT_COORDINATOR CONFIG
    mcp_client.py http URL TOKEN
"""

import asyncio
import json
import sys

from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def drive(read, write, calls):
    async with ClientSession(read, write) as session:
        init = await session.initialize()
        listed = await session.list_tools()
        report = {
            "server": init.server_info.name,
            "instructions": init.instructions,
            "tools": [{"name": t.name, "description": t.description} for t in listed.tools],
            "calls": [],
        }
        for call in calls:
            result = await session.call_tool(call["tool"], call["arguments"])
            text = "\n".join(block.text for block in result.content if getattr(block, "text", None))
            report["calls"].append({"tool": call["tool"], "is_error": bool(result.is_error),
                                    "text": text, "structured": result.structured_content})
        return report


async def main():
    calls = json.load(sys.stdin)
    if sys.argv[1] == "stdio":
        params = StdioServerParameters(command=sys.argv[2], args=["mcp", "--config", sys.argv[3]])
        async with stdio_client(params) as (read, write):
            report = await drive(read, write, calls)
    else:
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {sys.argv[3]}"})
        async with http, streamable_http_client(sys.argv[2], http_client=http) as (read, write):
            report = await drive(read, write, calls)
    print(json.dumps(report))


asyncio.run(main())
