-- POST /v1/waitlist/ with a different address each time (new entries, not just repeats).
local counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"email":"bench-%d-%d@example.com"}', math.random(1, 1000000000), counter)
  return wrk.format("POST", "/v1/waitlist/", {["Content-Type"] = "application/json"}, body)
end
