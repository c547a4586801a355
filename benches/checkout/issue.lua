-- POST /v1/tokens, each request for a membership of its own (membership n
-- has the id 00000000-0000-0000-0000-<n in hex>). Arguments: API key,
-- offer id, first membership, how many, wrk threads.
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  key = args[1]
  offer = args[2]
  first = tonumber(args[3])
  count = tonumber(args[4])
  stride = tonumber(args[5])
  k = 0
end

function request()
  local at = id + stride * k
  k = k + 1
  if at >= count then
    return wrk.format("GET", "/exhausted")
  end
  local n = first + at
  return wrk.format("POST", "/v1/tokens", {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "i-" .. n,
  }, string.format('{"membership_id":"00000000-0000-0000-0000-%012x","offer_id":"%s"}', n, offer))
end
