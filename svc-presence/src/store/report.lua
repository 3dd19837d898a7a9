-- Applies one gateway report atomically; every key belongs to the gateway
-- (one hash tag, so it runs on one Redis Cluster node).
-- KEYS: meta (seq, address), sessions (session -> user), users (user ->
--       sessions as "session US device US ts" joined by RS), rooms (room -> online)
-- ARGV: seq, full (0|1), ttl_ms, address,
--       n_added, (session, user, device, connected_ms) * n_added,
--       n_removed, session * n_removed,
--       n_rooms, (room, online) * n_rooms
-- Returns 1 when applied, 0 when a delta lacks its predecessor.
local seq = tonumber(ARGV[1])
local full = ARGV[2] == '1'
local ttl = tonumber(ARGV[3])
local last = redis.call('HGET', KEYS[1], 'seq')
if not full and (not last or tonumber(last) + 1 ~= seq) then
  return 0
end
if full then
  redis.call('DEL', KEYS[2], KEYS[3])
end
local i = 5
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local sid, user, device, ts = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  -- A session already held (a snapshot and a delta may both carry it) is kept once.
  if redis.call('HSETNX', KEYS[2], sid, user) == 1 then
    local entry = sid .. '\31' .. device .. '\31' .. ts
    local current = redis.call('HGET', KEYS[3], user)
    if current then entry = current .. '\30' .. entry end
    redis.call('HSET', KEYS[3], user, entry)
  end
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local sid = ARGV[i]; i = i + 1
  local user = redis.call('HGET', KEYS[2], sid)
  if user then
    redis.call('HDEL', KEYS[2], sid)
    local kept = {}
    local current = redis.call('HGET', KEYS[3], user)
    if current then
      for entry in string.gmatch(current, '[^\30]+') do
        if string.sub(entry, 1, #sid + 1) ~= sid .. '\31' then table.insert(kept, entry) end
      end
    end
    if #kept == 0 then
      redis.call('HDEL', KEYS[3], user)
    else
      redis.call('HSET', KEYS[3], user, table.concat(kept, '\30'))
    end
  end
end
redis.call('DEL', KEYS[4])
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('HSET', KEYS[1], 'seq', seq, 'address', ARGV[4])
for k = 1, 4 do redis.call('PEXPIRE', KEYS[k], ttl) end
return 1
