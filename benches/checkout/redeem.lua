-- POST /v1/redemptions, each request redeeming a signed token of its own
-- under an Idempotency-Key of its own. Arguments: API key, the file of
-- tokens (one a line), wrk threads. Thread t takes lines t, t + threads, ...
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  key = args[1]
  local stride = tonumber(args[3])
  tokens = {}
  local line_number = 0
  for line in io.lines(args[2]) do
    if line_number % stride == id then
      table.insert(tokens, line)
    end
    line_number = line_number + 1
  end
  k = 0
end

function request()
  k = k + 1
  local token = tokens[k]
  if token == nil then
    return wrk.format("GET", "/exhausted")
  end
  return wrk.format("POST", "/v1/redemptions", {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "r-" .. id .. "-" .. k,
  }, '{"token":"' .. token .. '","order_ref":"order-' .. id .. "-" .. k .. '","amount":12900}')
end
