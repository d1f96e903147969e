-- wrk script: print the run's figures as one JSON line (latencies in microseconds).
-- With WRK_PATHS="/a,/b" set, requests cycle through those paths (the memory soak).

local paths = {}
local spec = os.getenv("WRK_PATHS")
if spec and spec ~= "" then
  for p in string.gmatch(spec, "[^,]+") do table.insert(paths, p) end
end

if #paths > 0 then
  local i = 0
  request = function()
    i = i + 1
    return wrk.format(nil, paths[(i % #paths) + 1])
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"lat_mean":%.1f,"lat_stdev":%.1f,"lat_min":%d,"lat_max":%d,"lat_p50":%d,"lat_p90":%d,' ..
    '"lat_p99":%d,"lat_p999":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.min, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
