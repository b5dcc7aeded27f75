-- wrk script for bench/send.sh: POST /v1/messages/ with a 5 KiB text body to the sink's domain.
-- Each wrk thread stops once it has had PER_THREAD answers; non-201 answers are counted.
local token = os.getenv("TOKEN")
local per_thread = tonumber(os.getenv("PER_THREAD") or "1000")
local kb = tonumber(os.getenv("KB") or "5")
local line = string.rep("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab", 1) .. "\\n"
local text = string.rep(line, math.floor(kb * 1024 / 75))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
answered, refused, sent = 0, 0, 0  -- globals: done() reads them with thread:get

request = function()
  sent = sent + 1
  local body = '{"to":[{"email":"bench@sink.example"}],"subject":"Bench ' .. sent .. '","text_body":"' .. text .. '"}'
  return wrk.format(nil, "/v1/messages/", nil, body)
end

response = function(status, headers, body)
  answered = answered + 1
  if status ~= 201 then refused = refused + 1 end
  if answered >= per_thread then wrk.thread:stop() end
end

local threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local total_refused = 0
  for _, t in ipairs(threads) do total_refused = total_refused + t:get("refused") end
  io.write(string.format("non-201 answers: %d\n", total_refused))
  io.write(string.format("latency p50 %.1f ms p99 %.1f ms\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
