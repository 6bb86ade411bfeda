-- uba gateway: what the gRPC-JSON transcoder cannot do on its own.
-- Runs before the transcoder on requests and after it on responses.
--
--  * The documented REST paths end in "/" (/api/behavior-analytics/logs/),
--    which a google.api.http template cannot express: strip one trailing
--    slash from /api/ paths so both spellings reach the same method.
--  * The alert stream is SSE without `id:` lines; a client that sends
--    Last-Event-ID (a polyfill, curl) resumes as if it had sent ?after_seq=.
--  * Browsers cannot send an Authorization header with EventSource or a
--    download link: on those two GET routes only, the dashboard's key cookie
--    becomes `authorization: Bearer`, and only for a request from the
--    gateway's own origin (see same_origin below). Every other route needs
--    the header itself (no cookie, no CSRF).
--  * The log download gets a Content-Disposition with a UTC timestamp and the
--    extension matching the Content-Type the server chose.
--  * REST answers lose the grpc-* headers of the upstream: the JSON body
--    carries the status. (Removing them on the route would be too early: the
--    transcoder reads grpc-status to turn a gRPC error into an HTTP one.)

local API_PREFIX = "/api/"
local STREAM_PATH = "/api/behavior-analytics/alerts/stream"
local DOWNLOAD_PATH = "/api/behavior-analytics/logs/download"
local EXTENSIONS = {
  ["text/csv"] = "csv",
  ["application/json"] = "json",
  ["application/x-ndjson"] = "ndjson",
}

-- Over TLS only the page's `__Host-uba_key` (Secure, Path=/, so no other
-- origin of the site can have set it); over plain HTTP, `uba_key`.
local function key_cookie(headers, tls)
  local wanted = tls and "__Host-uba_key" or "uba_key"
  for name, value in (headers:get("cookie") or ""):gmatch("([^=;%s]+)=([^;]*)") do
    if name == wanted and value:match("^[%w_%-]+$") then
      return value
    end
  end
  return nil
end

-- SameSite=Strict lets every origin of the same site send the cookie: a page
-- on another port of this host, or on a sibling subdomain. So the request
-- must say it comes from this origin: Sec-Fetch-Site: same-origin (every
-- current browser, to https and localhost), or, where a browser sends no
-- Sec-Fetch-Site (plain HTTP to a LAN address), an Origin or Referer of this
-- very origin (the page's Referrer-Policy is same-origin). A request with
-- none of them (curl with a cookie) is refused: send the header instead.
local function same_origin(headers, tls)
  local site = headers:get("sec-fetch-site")
  if site ~= nil then
    return site == "same-origin"
  end
  local authority = headers:get(":authority")
  if authority == nil then
    return false
  end
  local own = ((tls and "https://" or "http://") .. authority):lower()
  local origin = headers:get("origin")
  if origin ~= nil then
    return origin:lower() == own
  end
  local referer = headers:get("referer")
  if referer ~= nil then
    local prefix = referer:match("^([%a][%w+.%-]*://[^/?#]+)")
    return prefix ~= nil and prefix:lower() == own
  end
  return false
end

local function is_grpc(headers)
  local content_type = headers:get("content-type")
  return content_type ~= nil and content_type:sub(1, 16) == "application/grpc"
end

function envoy_on_request(request_handle)
  local headers = request_handle:headers()
  local metadata = request_handle:streamInfo():dynamicMetadata()
  -- The transcoder turns every REST call into a POST; log what came in.
  metadata:set("uba.gateway", "method", headers:get(":method") or "-")
  if is_grpc(headers) then
    return
  end
  local full = headers:get(":path")
  if full == nil then
    return
  end
  local path, query = full:match("^([^?]*)(.*)$")
  local changed = false

  if path:sub(1, #API_PREFIX) ~= API_PREFIX then
    return
  end
  metadata:set("uba.gateway", "rest", "1")
  if #path > #API_PREFIX and path:sub(-1) == "/" then
    path = path:sub(1, -2)
    changed = true
  end

  if (path == STREAM_PATH or path == DOWNLOAD_PATH) and headers:get(":method") == "GET"
      and headers:get("authorization") == nil then
    local tls = request_handle:connection():ssl() ~= nil
    local key = key_cookie(headers, tls)
    if key ~= nil and same_origin(headers, tls) then
      headers:add("authorization", "Bearer " .. key)
    end
  end

  if path == STREAM_PATH then
    local has_after_seq = query:find("[?&]after_seq=") or query:find("[?&]afterSeq=")
    local last_event_id = headers:get("last-event-id")
    if not has_after_seq and last_event_id ~= nil and last_event_id:match("^%d+$") then
      if query == "" or query == "?" then
        query = "?after_seq=" .. last_event_id
      else
        query = query .. "&after_seq=" .. last_event_id
      end
      changed = true
    end
  elseif path == DOWNLOAD_PATH then
    metadata:set("uba.gateway", "download", "1")
  end

  if changed then
    headers:replace(":path", path .. query)
    request_handle:clearRouteCache()
  end
end

function envoy_on_response(response_handle)
  local metadata = response_handle:streamInfo():dynamicMetadata():get("uba.gateway")
  if metadata == nil or metadata["rest"] == nil then
    return
  end
  local headers = response_handle:headers()
  headers:remove("grpc-status")
  headers:remove("grpc-message")
  headers:remove("grpc-accept-encoding")
  if metadata["download"] == nil or headers:get(":status") ~= "200" then
    return
  end
  local content_type = (headers:get("content-type") or ""):match("^%s*([^;%s]*)")
  local extension = EXTENSIONS[content_type] or "txt"
  local filename = "uba-logs-" .. os.date("!%Y%m%dT%H%M%SZ") .. "." .. extension
  headers:replace("content-disposition", 'attachment; filename="' .. filename .. '"')
  headers:replace("x-content-type-options", "nosniff")
  headers:replace("cache-control", "no-store")
end
