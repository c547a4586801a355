-- GET of the URL's path, with an API key when one is given as argument.
function init(args)
  local headers = {}
  if args[1] then
    headers["Authorization"] = "Bearer " .. args[1]
  end
  req = wrk.format("GET", nil, headers)
end

function request()
  return req
end
