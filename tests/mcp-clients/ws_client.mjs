// MCP's JSON-RPC over a WebSocket (the `ws` package, as wscat uses), for
// the gateway's `/ws`: initialize, tools/list, then `echo`.
//
// Usage: node ws_client.mjs URL USER [ECHO_TOOL]
//   URL        e.g. ws://127.0.0.1:4444/ws
//   USER       sent as X-Authenticated-User on the upgrade request; "" sends none
//   ECHO_TOOL  the tool to call with {"message": "hello"} (default `echo`)
// Prints one JSON object on stdout. Exit 0: upgraded and every call
// answered; 3: the upgrade was refused (the JSON says with which status and
// body); 1: anything else, the reason on stderr.
import WebSocket from "ws";

const [url, user, echoTool = "echo"] = process.argv.slice(2);
if (!url || user === undefined) {
  console.error("usage: ws_client.mjs URL USER [ECHO_TOOL]");
  process.exit(2);
}

const headers = user ? { "X-Authenticated-User": user } : {};
const ws = new WebSocket(url, "mcp", { headers });
const pending = new Map();
let nextId = 1;

function call(method, params) {
  const id = nextId++;
  ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}

ws.on("unexpected-response", (_req, res) => {
  let body = "";
  res.on("data", (c) => (body += c));
  res.on("end", () => {
    console.log(JSON.stringify({ upgraded: false, status: res.statusCode, body }));
    process.exit(3);
  });
});

ws.on("message", (data) => {
  let msg;
  try {
    msg = JSON.parse(String(data));
  } catch {
    console.error(`ws_client: not JSON: ${data}`);
    process.exit(1);
  }
  const waiter = msg.id !== undefined && pending.get(msg.id);
  if (!waiter) return; // notifications and server requests: not checked here
  pending.delete(msg.id);
  if (msg.error) waiter.reject(new Error(JSON.stringify(msg.error)));
  else waiter.resolve(msg.result);
});

ws.on("error", (e) => {
  console.error(`ws_client: ${url}: ${e.message}`);
  process.exit(1);
});

ws.on("open", async () => {
  try {
    const init = await call("initialize", {
      protocolVersion: "2025-06-18",
      capabilities: {},
      clientInfo: { name: "mcp-gateway-ws-client", version: "1.0.0" },
    });
    ws.send(JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }));
    const tools = (await call("tools/list", {})).tools.map((t) => t.name).sort();
    const echo = await call("tools/call", { name: echoTool, arguments: { message: "hello" } });
    const text = (echo.content ?? []).map((c) => c.text ?? "").join("");
    console.log(JSON.stringify({ upgraded: true, server: init.serverInfo?.name, tools, echo: text }));
    ws.close();
    process.exit(0);
  } catch (e) {
    console.error(`ws_client: ${url}: ${e.message}`);
    process.exit(1);
  }
});
