-- POST /v1/verifications, each request for a person of its own (fresh
-- people, all on the roster). Person n is made exactly as `people::raw`
-- makes it in Rust. Arguments: API key, first person, how many, wrk threads.
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  key = args[1]
  first = tonumber(args[2])
  count = tonumber(args[3])
  stride = tonumber(args[4])
  k = 0
end

function request()
  local at = id + stride * k
  k = k + 1
  if at >= count then
    return wrk.format("GET", "/exhausted")
  end
  local n = first + at
  local body = string.format(
    '{"community":"student","person":{"email":"p%d@school%d.example","given_name":"Given%d",'
      .. '"family_name":"Family%d","birth_date":"%04d-%02d-%02d"},"consent":true,'
      .. '"client_ip":"10.%d.%d.%d"}',
    n, n % 500, n, n % 5000, 1985 + n % 20, 1 + n % 12, 1 + n % 28,
    math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  return wrk.format("POST", "/v1/verifications", {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "v-" .. n,
  }, body)
end
