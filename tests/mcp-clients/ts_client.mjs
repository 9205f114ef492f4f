// The official TypeScript MCP SDK client (StreamableHTTPClientTransport)
// against one MCP endpoint: the gateway's, or an upstream's directly.
//
// Usage: node ts_client.mjs URL USER [CHECKS] [PREFIX]
//   URL     the Streamable HTTP endpoint, e.g. http://127.0.0.1:4444/servers/everything/mcp
//   USER    sent as X-Authenticated-User (what an auth proxy in front would set)
//   CHECKS  comma list out of list,echo,progress,sampling,cancel (default: all)
//   PREFIX  put before every tool name the checks call: a virtual server that
//           merges several upstreams names them `<server><separator><tool>`
// Prints one JSON object (what it observed) on stdout; the Rust test
// (tests/integration/sdk_clients.rs) asserts on it. Exits 1 with the reason
// on stderr when a step fails.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CreateMessageRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const [url, user, checksArg, prefix = ""] = process.argv.slice(2);
if (!url || !user) {
  console.error("usage: ts_client.mjs URL USER [CHECKS] [PREFIX]");
  process.exit(2);
}
const checks = new Set((checksArg || "list,echo,progress,sampling,cancel").split(","));
// What the sampling handler answers; the test looks for it in the tool's result.
const CANNED = "canned answer from the TypeScript client";
// server-everything's tool names (2026.8.31).
const LONG = `${prefix}trigger-long-running-operation`;
const SAMPLING = `${prefix}trigger-sampling-request`;

const started = performance.now();
const now = () => Math.round(performance.now() - started);

function connect() {
  const client = new Client(
    { name: "mcp-gateway-ts-client", version: "1.0.0" },
    { capabilities: { sampling: {} } },
  );
  let samplingRequests = 0;
  client.setRequestHandler(CreateMessageRequestSchema, async () => {
    samplingRequests += 1;
    return {
      model: "canned-model",
      role: "assistant",
      content: { type: "text", text: CANNED },
      stopReason: "endTurn",
    };
  });
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { "X-Authenticated-User": user } },
  });
  return { client, transport, samplingRequests: () => samplingRequests };
}

const text = (result) => (result.content ?? []).map((c) => c.text ?? "").join("");

async function main() {
  const out = {};
  const { client, transport, samplingRequests } = connect();
  await client.connect(transport);
  out.server = client.getServerVersion()?.name;
  out.session = transport.sessionId !== undefined;

  if (checks.has("list")) {
    const names = [];
    let cursor;
    do {
      const page = await client.listTools(cursor ? { cursor } : {});
      names.push(...page.tools.map((t) => t.name));
      cursor = page.nextCursor;
    } while (cursor);
    out.tools = names.sort();
  }

  if (checks.has("echo")) {
    out.echo = text(await client.callTool({ name: `${prefix}echo`, arguments: { message: "hello" } }));
  }

  if (checks.has("progress")) {
    // Five steps over five seconds. When the first progress arrives, an echo
    // goes out on the same session: if the path between (the gateway) held
    // the event stream back until the tool finished, that progress would
    // come with the result and the echo would answer after it. Arrival
    // order is the proof, not a clock.
    const progress = [];
    const order = [];
    let interleaved;
    const call = client.callTool(
      { name: LONG, arguments: { duration: 5, steps: 5 } },
      undefined,
      {
        onprogress: (p) => {
          progress.push({ progress: p.progress, total: p.total, at_ms: now() });
          order.push(`progress ${p.progress}`);
          if (!interleaved) {
            interleaved = client
              .callTool({ name: `${prefix}echo`, arguments: { message: "meanwhile" } })
              .then((r) => order.push(`echo ${text(r)}`));
          }
        },
      },
    );
    const result = await call;
    order.push("result");
    const resultAt = now();
    await interleaved;
    out.progress = { events: progress, result_at_ms: resultAt, order, result: text(result) };
  }

  if (checks.has("sampling")) {
    const result = await client.callTool({
      name: SAMPLING,
      arguments: { prompt: "say something", maxTokens: 20 },
    });
    out.sampling = { result: text(result), requests: samplingRequests(), canned: CANNED };
  }

  if (checks.has("cancel")) {
    // A long call aborted once its first progress has arrived (so it is
    // surely running upstream); then the same session must still answer.
    const controller = new AbortController();
    let seen = 0;
    const t0 = now();
    let error;
    try {
      await client.callTool({ name: LONG, arguments: { duration: 60, steps: 60 } }, undefined, {
        signal: controller.signal,
        onprogress: () => {
          seen += 1;
          controller.abort("cancelled by the test");
        },
      });
    } catch (e) {
      error = String(e?.message ?? e);
    }
    const cancelledAfterMs = now() - t0;
    const after = text(await client.callTool({ name: `${prefix}echo`, arguments: { message: "after cancel" } }));
    out.cancel = { error, progress_seen: seen, cancelled_after_ms: cancelledAfterMs, echo_after: after };
  }

  await transport.terminateSession().catch(() => {});
  await client.close();
  return out;
}

try {
  const out = await main();
  console.log(JSON.stringify(out));
  process.exit(0);
} catch (e) {
  console.error(`ts_client: ${url}: ${e?.stack ?? e}`);
  process.exit(1);
}
