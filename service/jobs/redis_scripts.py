"""Lua scripts of the Redis job store: each change of a job record is atomic across replicas.

A record is a hash (`layerscope:job:<id>`) beside its request (`...:request`) and result
(`...:result`); `layerscope:jobs` indexes them by creation time. The queue that hands a job
to a replica is saq's (`job_queue`); these scripts keep what saq does not: admission by
count, bytes and tenant, and the record every replica answers from. Only the replica named
in `worker` may write progress or the outcome of a running job, so a replica that lost its
lease cannot overwrite the one that took the job over.
"""

FINISHED = """
local function finished(s) return s == 'succeeded' or s == 'failed' or s == 'cancelled' end
"""

# KEYS: index. ARGV: prefix, id, kind, total, now, request, max_jobs, max_bytes,
# owner, the owner's most unfinished jobs (-1: no limit).
# Returns 1 (queued), 0 (every slot taken), -1 (bytes), -2 (the owner's slots taken).
SUBMIT = (
    FINISHED
    + """
local index, prefix, id = KEYS[1], ARGV[1], ARGV[2]
local size, max_n, max_b = string.len(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local owner, owner_max = ARGV[9], tonumber(ARGV[10])
local count, used, done, owned = 0, 0, {}, 0
for _, other in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  local f = redis.call('HMGET', prefix .. other, 'status', 'bytes', 'owner')
  if not f[1] then
    redis.call('ZREM', index, other)
  else
    count = count + 1
    used = used + tonumber(f[2] or '0')
    if finished(f[1]) then
      table.insert(done, {other, tonumber(f[2] or '0')})
    elseif (f[3] or '') == owner then
      owned = owned + 1
    end
  end
end
if owner_max >= 0 and owned >= owner_max then return -2 end
local i = 1
while (count >= max_n or used + size > max_b) and i <= #done do
  local victim = prefix .. done[i][1]
  redis.call('DEL', victim, victim .. ':request', victim .. ':result')
  redis.call('ZREM', index, done[i][1])
  count, used, i = count - 1, used - done[i][2], i + 1
end
if count >= max_n then return 0 end
if used + size > max_b then return -1 end
redis.call('HSET', prefix .. id, 'id', id, 'kind', ARGV[3], 'total', ARGV[4], 'created', ARGV[5],
  'status', 'queued', 'step', 0, 'bytes', size, 'attempts', 0, 'owner', owner)
redis.call('SET', prefix .. id .. ':request', ARGV[6])
redis.call('ZADD', index, ARGV[5], id)
return 1
"""
)

# KEYS: record. ARGV: worker, now, attempt (saq's count of starts), queue_timeout_s.
# Returns 'run', or why the job must be finished instead: missing, finished, cancel, late.
CLAIM = (
    FINISHED
    + """
local f = redis.call('HMGET', KEYS[1], 'status', 'cancel', 'attempts', 'created')
if not f[1] then return 'missing' end
if finished(f[1]) then return 'finished' end
if f[2] == '1' then return 'cancel' end
local attempts = tonumber(f[3] or '0')
if attempts == 0 and tonumber(ARGV[2]) - tonumber(f[4]) > tonumber(ARGV[4]) then return 'late' end
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'started', ARGV[2],
  'attempts', ARGV[3], 'step', 0)
return 'run'
"""
)

# KEYS: record. ARGV: worker, step, total. Returns ok, cancel, or lost (another owner now).
PROGRESS = """
local f = redis.call('HMGET', KEYS[1], 'worker', 'cancel', 'status')
if f[1] ~= ARGV[1] or f[3] ~= 'running' then return 'lost' end
redis.call('HSET', KEYS[1], 'step', ARGV[2], 'total', ARGV[3])
if f[2] == '1' then return 'cancel' end
return 'ok'
"""

# KEYS: record, request, result. ARGV: worker ('' = whoever holds it), status, now, ttl_ms,
# media_type, error json, error_status, result body. Returns 1 when this call finished it.
FINISH = (
    FINISHED
    + """
local f = redis.call('HMGET', KEYS[1], 'status', 'worker', 'total')
if not f[1] or finished(f[1]) then return 0 end
if ARGV[1] ~= '' and f[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'finished', ARGV[3], 'bytes', string.len(ARGV[8]))
if ARGV[2] == 'succeeded' then
  redis.call('HSET', KEYS[1], 'step', f[3], 'media_type', ARGV[5])
  redis.call('SET', KEYS[3], ARGV[8], 'PX', ARGV[4])
end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[6], 'error_status', ARGV[7]) end
redis.call('DEL', KEYS[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""
)

# KEYS: record, request, result, index. ARGV: id, now, ttl_ms, tenant, admin ('1' or '0').
# Returns the record as it was answered (before a finished one is forgotten), {} if unknown
# or another tenant's.
DELETE = (
    FINISHED
    + """
local f = redis.call('HMGET', KEYS[1], 'status', 'owner')
local status = f[1]
if not status then return {} end
if ARGV[5] ~= '1' and (f[2] or '') ~= ARGV[4] then return {} end
if finished(status) then
  local record = redis.call('HGETALL', KEYS[1])
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  redis.call('ZREM', KEYS[4], ARGV[1])
  return record
end
redis.call('HSET', KEYS[1], 'cancel', '1')
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished', ARGV[2])
  redis.call('DEL', KEYS[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return redis.call('HGETALL', KEYS[1])
"""
)

# KEYS: record. ARGV: worker. A replica shutting down hands its running job back to the queue.
HAND_BACK = """
local f = redis.call('HMGET', KEYS[1], 'status', 'worker', 'attempts')
if f[1] ~= 'running' or f[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued', 'worker', '', 'step', 0,
  'attempts', math.max(tonumber(f[3] or '1') - 1, 0))
return 1
"""
