"""Uploads kept in Redis, so every replica answers every image_id.

Bounded like the in-process store (count and bytes, least recently used evicted first) and,
in addition, by a TTL renewed on every read. The bookkeeping (a sorted set in access order, a
size hash and a byte counter) changes in one Lua script, so replicas never see it half done;
images that expired by TTL are dropped from it the next time eviction reaches them.
"""

from __future__ import annotations

from typing import Any

import redis

from service.workers.image_store import IMAGE_ID, content_id, not_found
from service.workers.redis_link import PREFIX, outage_is_503

_LRU, _SIZES, _BYTES = PREFIX + "images:lru", PREFIX + "images:sizes", PREFIX + "images:bytes"
_CLOCK = PREFIX + "images:clock"  # a counter, not wall time: replicas' clocks may differ
_IMAGE = PREFIX + "image:"

_PUT = """
local lru, sizes, total, key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, ttl, now = ARGV[1], tonumber(ARGV[3]), redis.call('INCR', KEYS[5])
local max_n, max_b, prefix = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local size = string.len(ARGV[2])
local old = redis.call('HGET', sizes, id)
if old then redis.call('DECRBY', total, old) end
redis.call('SET', key, ARGV[2], 'PX', ttl)
redis.call('HSET', sizes, id, size)
redis.call('INCRBY', total, size)
redis.call('ZADD', lru, now, id)
while redis.call('ZCARD', lru) > max_n or tonumber(redis.call('GET', total)) > max_b do
  local oldest = redis.call('ZRANGE', lru, 0, 0)[1]
  if oldest == nil or oldest == id then break end
  redis.call('ZREM', lru, oldest)
  redis.call('DEL', prefix .. oldest)
  local s = redis.call('HGET', sizes, oldest)
  if s then
    redis.call('DECRBY', total, s)
    redis.call('HDEL', sizes, oldest)
  end
end
return size
"""

_GET = """
local data = redis.call('GET', KEYS[1])
if data then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('ZADD', KEYS[2], 'XX', redis.call('INCR', KEYS[3]), ARGV[1])
end
return data
"""


class RedisImageStore:
    """The `ImageStore` interface on Redis; an outage answers 503 (`StoreUnavailable`)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        max_images: int,
        max_bytes: int,
        ttl_s: float,
        retry_after_s: int = 5,
    ) -> None:
        # Any: redis-py types each reply as raw or decoded; this client's are raw bytes.
        self._put: Any = client.register_script(_PUT)
        self._get: Any = client.register_script(_GET)
        self.max_images = max_images
        self.max_bytes = max_bytes
        self._ttl_ms = max(int(ttl_s * 1000), 1)
        self._retry_after_s = retry_after_s

    def put(self, data: bytes) -> str:
        image_id = content_id(data)
        args = [image_id, data, self._ttl_ms, 0, self.max_images, self.max_bytes, _IMAGE]
        with outage_is_503(self._retry_after_s):
            self._put(keys=[_LRU, _SIZES, _BYTES, _IMAGE + image_id, _CLOCK], args=args)
        return image_id

    def get(self, image_id: str) -> bytes:
        if not IMAGE_ID.match(image_id):
            raise not_found(image_id)
        keys = [_IMAGE + image_id, _LRU, _CLOCK]
        with outage_is_503(self._retry_after_s):
            data = self._get(keys=keys, args=[image_id, self._ttl_ms])
        if data is None:
            raise not_found(image_id)
        return data
