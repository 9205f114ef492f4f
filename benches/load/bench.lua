-- wrk script of the load benchmark (benches/load/run.sh).
--
-- Sends the same ~1 KiB JSON-RPC `tools/call` POST to every target, plus the
-- target's own credential headers from BENCH_HEADERS ("Name: value" lines),
-- and counts every response that is not 200: a 401 or 404 is answered much
-- faster than a proxied call and would make a target look fast.
--
-- Prints one machine-readable line at the end:
--   BENCH requests=… rps=… p50_us=… p99_us=… non200=… errors=…

-- The body is the file run.sh writes, so wrk and loadgen send the same bytes.
local function read_body()
  local path = os.getenv("BENCH_BODY_FILE")
  local file = path and io.open(path, "rb")
  if not file then
    error("BENCH_BODY_FILE must name the request body file")
  end
  local body = file:read("*a")
  file:close()
  return body
end

wrk.method = "POST"
wrk.body = read_body()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^%s*([^:]+):%s*(.-)%s*$")
  if name then wrk.headers[name] = value end
end

-- Each wrk thread has its own Lua state: keep the threads to sum at the end.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non200 = 0
  first_status = 0
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    if first_status == 0 then first_status = status end
  end
end

function done(summary, latency, requests)
  local bad, seen = 0, 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non200")
    if seen == 0 then seen = thread:get("first_status") end
  end
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout
  io.write(string.format(
    "BENCH requests=%d rps=%.1f p50_us=%d p99_us=%d non200=%d first_non200=%d errors=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), bad, seen, errors))
end
