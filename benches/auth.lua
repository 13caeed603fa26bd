-- wrk script: sends the API key from WFS_KEY as a bearer token. With WRK_DELAY_MS set, each
-- connection waits that many milliseconds before its next request, which keeps the request
-- rate near connections * 1000 / (WRK_DELAY_MS + latency).
local key = os.getenv("WFS_KEY")
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "0")
if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end
