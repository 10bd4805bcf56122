-- wrk script: POST single watch events, each with its own user and movie.
local counter = 0
local thread_id = 0
setup = function(thread)
  thread:set("tid", thread_id)
  thread_id = thread_id + 1
end
request = function()
  counter = counter + 1
  local user = "u" .. tostring(tid) .. "_" .. tostring(counter % 5000)
  local movie = "m" .. tostring(counter % 997)
  local body = '{"user_id":"' .. user .. '","movie_id":"' .. movie .. '","progress":0.5,"watched_seconds":1200}'
  return wrk.format("POST", wrk.path, {["Content-Type"] = "application/json"}, body)
end
