"""The shards of a dataset job in Redis: which replica runs which slice, their partials, and
who merges them.

Beside the job's record (`layerscope:job:<id>`) a sharded job keeps `...:shards` (a hash: the
slice count and size, per slice `s:<i>` = `run|<replica>` or `done|<replica>`, `n:<i>`
pictures done, `a:<i>` starts, and `merger`), `...:prelude` (what every slice agreed on)
and `...:partials` (slice index -> packed partial). Every change is one Lua script, so two
replicas never both merge, and a replica that lost a slice to another (presumed dead, its
lease lapsed) cannot overwrite what the new owner writes. The record's `step` is kept equal
to the pictures done over every slice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.jobs.redis_scripts import FINISHED

# KEYS: record, shards, prelude. ARGV: worker, count, size, prelude, ttl_ms.
# 'ok' (planned now or before), 'lost' (another replica runs the job), 'cancel'.
PLAN = (
    FINISHED
    + """
local f = redis.call('HMGET', KEYS[1], 'worker', 'status', 'cancel')
if f[2] ~= 'running' or f[1] ~= ARGV[1] then return 'lost' end
if f[3] == '1' then return 'cancel' end
if redis.call('HEXISTS', KEYS[2], 'count') == 0 then
  redis.call('HSET', KEYS[2], 'count', ARGV[2], 'size', ARGV[3])
  redis.call('SET', KEYS[3], ARGV[4])
end
local count, step = tonumber(redis.call('HGET', KEYS[2], 'count')), 0
for i = 0, count - 1 do step = step + tonumber(redis.call('HGET', KEYS[2], 'n:' .. i) or '0') end
redis.call('HSET', KEYS[1], 'step', step, 'shards', count, 'worker', '')
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
return 'ok'
"""
)

# KEYS: record, shards, partials. ARGV: slice, worker.
# 'run', 'stored' (its partial is in: only the merge may be left), 'finished', 'cancel'.
CLAIM = (
    FINISHED
    + """
local f = redis.call('HMGET', KEYS[1], 'status', 'cancel')
if not f[1] or finished(f[1]) then return 'finished' end
if f[2] == '1' then return 'cancel' end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 'stored' end
local n = tonumber(redis.call('HGET', KEYS[2], 'n:' .. ARGV[1]) or '0')
redis.call('HINCRBY', KEYS[1], 'step', 0 - n)  -- not -n: Lua's -0 is no integer to Redis
redis.call('HSET', KEYS[2], 's:' .. ARGV[1], 'run|' .. ARGV[2], 'n:' .. ARGV[1], 0)
redis.call('HINCRBY', KEYS[2], 'a:' .. ARGV[1], 1)
return 'run'
"""
)

# KEYS: record, shards. ARGV: slice, worker, pictures done. 'ok', 'cancel', 'lost', 'finished'.
PROGRESS = (
    FINISHED
    + """
local f = redis.call('HMGET', KEYS[1], 'status', 'cancel')
if not f[1] or finished(f[1]) then return 'finished' end
if redis.call('HGET', KEYS[2], 's:' .. ARGV[1]) ~= 'run|' .. ARGV[2] then return 'lost' end
local n = tonumber(redis.call('HGET', KEYS[2], 'n:' .. ARGV[1]) or '0')
redis.call('HINCRBY', KEYS[1], 'step', tonumber(ARGV[3]) - n)
redis.call('HSET', KEYS[2], 'n:' .. ARGV[1], ARGV[3])
if f[2] == '1' then return 'cancel' end
return 'ok'
"""
)

# KEYS: record, shards, partials. ARGV: slice, worker, pictures, partial ('' = stored before),
# ttl_ms. 'merge' (this slice merges), 'wait', 'lost', 'finished', or 'evicted' (the slices'
# data left Redis: the plan or a stored partial is gone, so the job can never be merged).
STORE = (
    FINISHED
    + """
local f = redis.call('HMGET', KEYS[1], 'status')
if not f[1] or finished(f[1]) then return 'finished' end
local i = ARGV[1]
local count = tonumber(redis.call('HGET', KEYS[2], 'count') or '-1')
if count < 0 then return 'evicted' end
if ARGV[4] ~= '' then
  if redis.call('HGET', KEYS[2], 's:' .. i) ~= 'run|' .. ARGV[2] then return 'lost' end
  local n = tonumber(redis.call('HGET', KEYS[2], 'n:' .. i) or '0')
  redis.call('HINCRBY', KEYS[1], 'step', tonumber(ARGV[3]) - n)
  redis.call('HSET', KEYS[2], 's:' .. i, 'done|' .. ARGV[2], 'n:' .. i, ARGV[3])
  redis.call('HSET', KEYS[3], i, ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
if ARGV[4] == '' and redis.call('HEXISTS', KEYS[3], i) == 0 then return 'evicted' end
local stored = redis.call('HLEN', KEYS[3])
if stored < count then
  -- A slice marked done whose partial is gone was evicted: nobody would ever merge.
  local done = 0
  for j = 0, count - 1 do
    if string.sub(redis.call('HGET', KEYS[2], 's:' .. j) or '', 1, 5) == 'done|' then
      done = done + 1
    end
  end
  if done > stored then return 'evicted' end
  return 'wait'
end
local merger = redis.call('HGET', KEYS[2], 'merger')
if not merger then redis.call('HSET', KEYS[2], 'merger', i); return 'merge' end
if merger == i then return 'merge' end
return 'wait'
"""
)


@dataclass(frozen=True)
class ShardsView:
    """Where a sharded job's slices stand.

    Attributes:
        total: slices; done: slices whose partial is stored.
        running: (slice, replica) of the slices being computed now.
        by_replica: replica -> slices it finished.
        rerun: slices started more than once (their replica was lost or stopped).
        merge_s: seconds the merge of the partials took, once done.
    """

    total: int
    done: int
    running: tuple[tuple[int, str], ...]
    by_replica: dict[str, int] = field(default_factory=dict)
    rerun: tuple[int, ...] = ()
    merge_s: float | None = None


def view_of_shards(fields: dict[bytes, bytes]) -> ShardsView | None:
    """The `...:shards` hash as Redis keeps it -> a `ShardsView` (None before the plan)."""
    if b"count" not in fields:
        return None
    total, running, by_replica, rerun, done = int(fields[b"count"]), [], {}, [], 0
    for i in range(total):
        state, _, replica = (fields.get(b"s:%d" % i) or b"").decode().partition("|")
        if state == "done":
            done += 1
            by_replica[replica] = by_replica.get(replica, 0) + 1
        elif state == "run":
            running.append((i, replica))
        if int(fields.get(b"a:%d" % i, b"0")) > 1:
            rerun.append(i)
    merge_s = float(fields[b"merge_s"]) if b"merge_s" in fields else None
    return ShardsView(total, done, tuple(running), by_replica, tuple(rerun), merge_s)


class ShardRecords:
    """The scripts above, bound to one Redis client (raw bytes replies)."""

    def __init__(self, client: Any, *, prefix: str, keep_s: float) -> None:
        self.redis, self.prefix = client, prefix
        self.keep_ms = max(int(keep_s * 1000), 1)
        self._scripts = {
            name: client.register_script(script)
            for name, script in (
                ("plan", PLAN),
                ("claim", CLAIM),
                ("progress", PROGRESS),
                ("store", STORE),
            )
        }

    def _keys(self, job_id: str, *names: str) -> list[str]:
        base = self.prefix + job_id
        return [base if not n else f"{base}:{n}" for n in names]

    def plan(self, job_id: str, worker: str, count: int, size: int, prelude: bytes) -> str:
        keys = self._keys(job_id, "", "shards", "prelude")
        args = [worker, count, size, prelude, self.keep_ms]
        return self._scripts["plan"](keys=keys, args=args).decode()

    def claim(self, job_id: str, shard: int, worker: str) -> str:
        keys = self._keys(job_id, "", "shards", "partials")
        return self._scripts["claim"](keys=keys, args=[shard, worker]).decode()

    def progress(self, job_id: str, shard: int, worker: str, done: int) -> str:
        keys = self._keys(job_id, "", "shards")
        return self._scripts["progress"](keys=keys, args=[shard, worker, done]).decode()

    def store(self, job_id: str, shard: int, worker: str, pictures: int, partial: bytes) -> str:
        """Keep the slice's partial (b'' when it was kept before); 'merge' when every slice
        is in and this one is the merger."""
        keys = self._keys(job_id, "", "shards", "partials")
        args = [shard, worker, pictures, partial, self.keep_ms]
        return self._scripts["store"](keys=keys, args=args).decode()

    def size(self, job_id: str) -> int | None:
        """Pictures per slice, as planned (None when the job was never split)."""
        value = self.redis.hget(self._keys(job_id, "shards")[0], "size")
        return int(value) if value is not None else None

    def prelude(self, job_id: str) -> bytes | None:
        return self.redis.get(self._keys(job_id, "prelude")[0])

    def partials(self, job_id: str, count: int) -> list[bytes] | None:
        """Every slice's packed partial, in slice order (None when one was evicted)."""
        stored = self.redis.hgetall(self._keys(job_id, "partials")[0])
        found = [stored.get(str(i).encode()) for i in range(count)]
        return None if any(blob is None for blob in found) else found  # type: ignore[misc]

    def merged(self, job_id: str, seconds: float) -> None:
        self.redis.hset(self._keys(job_id, "shards")[0], "merge_s", repr(seconds))

    def view(self, job_id: str) -> ShardsView | None:
        return view_of_shards(self.redis.hgetall(self._keys(job_id, "shards")[0]))

    def forget(self, job_id: str, ttl_ms: int) -> None:
        """Drop the slices' data once the job has ended; who ran which slice stays as long
        as the record."""
        shards, prelude, partials = self._keys(job_id, "shards", "prelude", "partials")
        self.redis.delete(prelude, partials)
        self.redis.pexpire(shards, ttl_ms)
