-- wrk script of the federation benchmark (benches/load/federation.sh).
--
-- One script for every target, so they are measured alike: the request is
-- described by the environment, and every response is checked, not only
-- counted: it must be a 200 AND carry the marker (the per-run echo message,
-- or for `GET /tools` the name of a page's last tool). A JSON-RPC error, a
-- tool error or a short page answered with 200 counts as bad.
--
-- Environment:
--   BENCH_METHOD     POST (default) or GET
--   BENCH_BODY_HEAD  the body, or with BENCH_BODY_TAIL the part before the
--                    JSON-RPC id: each request then gets its own id (thread
--                    number * 1e9 + counter), as a session shared by the
--                    connections of one thread needs (ids map replies to
--                    requests within a session)
--   BENCH_BODY_TAIL  the part after the id
--   BENCH_EXPECT     the marker every good response carries
--   BENCH_SESSIONS   one Mcp-Session-Id per wrk thread, space-separated
--                    ("-" or unset: no session)
--   BENCH_HEADERS    extra "Name: value" lines (the proxy identity header)
--
-- Prints one machine-readable line at the end:
--   BENCH requests=… rps=… p50_us=… p99_us=… non200=… badbody=… errors=… first_status=…
-- and, if any response was bad, "BENCH_FIRST_BAD <status> <body prefix>".

local method = os.getenv("BENCH_METHOD") or "POST"
local head = os.getenv("BENCH_BODY_HEAD") or ""
local tail = os.getenv("BENCH_BODY_TAIL")
local expect = os.getenv("BENCH_EXPECT") or error("BENCH_EXPECT must be set")

local sessions = {}
for sid in (os.getenv("BENCH_SESSIONS") or ""):gmatch("%S+") do
  table.insert(sessions, sid)
end

wrk.method = method
wrk.headers["Accept"] = "application/json, text/event-stream"
if method == "POST" then
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = head
end
for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^%s*([^:]+):%s*(.-)%s*$")
  if name then wrk.headers[name] = value end
end

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

if tail then
  function request()
    counter = counter + 1
    return wrk.format(nil, nil, nil, head .. (id_base + counter) .. tail)
  end
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
