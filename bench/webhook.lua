-- wrk's script for bench/webhook.ts: sends pre-signed webhook deliveries, each once, in the
-- order of the file (BENCH_WRK_FILE: one delivery a line, "webhook-id TAB timestamp TAB
-- signature TAB body"), cycling to the start only if the run outlasts the file. With
-- BENCH_WRK_RATE (requests per second), sends are paced on one schedule shared by every
-- connection of the thread (run wrk with -t1); without it, as fast as the server answers.
-- done() prints one JSON line for the benchmark to read.
local path = os.getenv("BENCH_WRK_PATH") or "/api/webhooks/replicate"
local rate = tonumber(os.getenv("BENCH_WRK_RATE") or "0")

local requests = {}
local count = 0
local next_index = 0

function init(args)
  for line in io.lines(os.getenv("BENCH_WRK_FILE")) do
    local id, timestamp, signature, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    if id then
      count = count + 1
      requests[count] = wrk.format("POST", path, {
        ["Content-Type"] = "application/json",
        ["webhook-id"] = id,
        ["webhook-timestamp"] = timestamp,
        ["webhook-signature"] = signature,
      }, body)
    end
  end
end

function request()
  next_index = next_index + 1
  if next_index > count then next_index = 1 end
  return requests[next_index]
end

if rate > 0 then
  local ffi = require("ffi")
  ffi.cdef([[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock_id, bench_timespec *tp);
  ]])
  local now_spec = ffi.new("bench_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, now_spec) -- CLOCK_MONOTONIC
    return tonumber(now_spec.tv_sec) * 1000 + tonumber(now_spec.tv_nsec) / 1e6
  end
  local interval = 1000 / rate
  local slot = 0
  -- Each send takes the next slot of the schedule; a server that falls behind is not
  -- sent a burst to catch up (the slot restarts from now).
  function delay()
    local now = now_ms()
    slot = math.max(slot + interval, now)
    return math.floor(slot - now)
  end
end

function done(summary, latency, requests)
  local status = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"durationUs":%d,"p50Us":%d,"p90Us":%d,"p99Us":%d,"maxUs":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, status.connect, status.read, status.write, status.status, status.timeout))
end
