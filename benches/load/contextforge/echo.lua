-- wrk script of the ContextForge comparison (benches/load/contextforge.sh).
--
-- Every target gets the same MCP Streamable HTTP load: `tools/call` of the
-- everything server's echo tool, POSTed over keep-alive connections, inside
-- an MCP session that the shell step opened beforehand (initialize +
-- notifications/initialized, see mcp_helper.py).
--
-- Environment:
--   BENCH_TOOL          tool name at this target (`echo`, or ContextForge's
--                       prefixed name, e.g. `everything-echo`)
--   BENCH_MESSAGE_FILE  file holding the echo message (the marker of a real reply)
--   BENCH_SESSIONS      one Mcp-Session-Id per wrk thread, space-separated;
--                       "-" where the target handed out none (stateless)
--   BENCH_HEADERS       extra "Name: value" lines (the proxy identity header)
--
-- A session is shared by the connections of one wrk thread, so every request
-- gets its own JSON-RPC id (thread number * 1e9 + counter): the MCP SDK maps
-- responses to requests by id within a session.
--
-- A response counts as good only if it is a 200 AND its body carries
-- "Echo: <message>" (a JSON-RPC error, a 200 "Access denied" tool result or
-- an SSE stream without the result all count as bad).
--
-- Prints one machine-readable line at the end:
--   BENCH requests=… rps=… p50_us=… p99_us=… non200=… badbody=… errors=… first_status=…
-- and, if any response was bad, a line "BENCH_FIRST_BAD <status> <body prefix>".

local function read_file(path)
  local file = path and io.open(path, "rb")
  if not file then
    error("cannot read " .. tostring(path))
  end
  local data = file:read("*a")
  file:close()
  return data
end

local tool = os.getenv("BENCH_TOOL") or error("BENCH_TOOL must be set")
local message = read_file(os.getenv("BENCH_MESSAGE_FILE")):gsub("%s+$", "")
local expect = "Echo: " .. message

local sessions = {}
for sid in (os.getenv("BENCH_SESSIONS") or ""):gmatch("%S+") do
  table.insert(sessions, sid)
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^%s*([^:]+):%s*(.-)%s*$")
  if name then wrk.headers[name] = value end
end

local body_head = '{"jsonrpc":"2.0","id":'
local body_tail = ',"method":"tools/call","params":{"name":"' .. tool
  .. '","arguments":{"message":"' .. message .. '"}}}'

-- Main Lua state: hand each thread its number and its session.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  local n = #threads
  thread:set("thread_no", n)
  thread:set("session_id", sessions[((n - 1) % math.max(#sessions, 1)) + 1] or "-")
end

-- Thread Lua states from here on.
function init(args)
  counter = 0
  id_base = (thread_no or 1) * 1000000000
  if session_id and session_id ~= "-" then
    wrk.headers["Mcp-Session-Id"] = session_id
  end
  non200 = 0
  badbody = 0
  first_status = 0
  first_bad = ""
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, body_head .. (id_base + counter) .. body_tail)
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  elseif not (body and body:find(expect, 1, true)) then
    badbody = badbody + 1
  else
    return
  end
  if first_status == 0 then
    first_status = status
    first_bad = (body or ""):sub(1, 300):gsub("%s+", " ")
  end
end

function done(summary, latency, requests)
  local bad200, non, seen, sample = 0, 0, 0, ""
  for _, thread in ipairs(threads) do
    non = non + thread:get("non200")
    bad200 = bad200 + thread:get("badbody")
    if seen == 0 and thread:get("first_status") ~= 0 then
      seen = thread:get("first_status")
      sample = thread:get("first_bad")
    end
  end
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout
  io.write(string.format(
    "BENCH requests=%d rps=%.1f p50_us=%d p99_us=%d non200=%d badbody=%d errors=%d first_status=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), non, bad200, errors, seen))
  if seen ~= 0 then
    io.write("BENCH_FIRST_BAD " .. seen .. " " .. sample .. "\n")
  end
end
