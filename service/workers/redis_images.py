"""Uploads kept in Redis, so every replica answers every image_id.

Bounded like the in-process store (count and bytes, least recently used evicted first, and a
tenant over its own byte limit losing its own oldest uploads) and, in addition, by a TTL
renewed on every read. The bookkeeping (sorted sets in access order, globally and per tenant,
a size hash, an owner hash and byte counters) changes in one Lua script, so replicas never see
it half done; images that expired by TTL are dropped from it the next time eviction reaches
them. The secret that keys image ids is shared by every replica: `LAYERSCOPE_ID_SECRET`, or
one stored in Redis by the first replica that needs it.
"""

from __future__ import annotations

import os
from typing import Any

import redis

from service.workers.image_store import IMAGE_ID, not_found, over_store_limit, over_tenant_limit
from service.workers.redis_link import PREFIX, outage_is_503
from service.workers.tenancy import ImageIds, Tenant

_LRU, _SIZES, _BYTES = PREFIX + "images:lru", PREFIX + "images:sizes", PREFIX + "images:bytes"
_OWNERS, _OWNED = PREFIX + "images:owners", PREFIX + "images:owned"
_TENANT_LRU = PREFIX + "images:lru:"  # + tenant name
_CLOCK = PREFIX + "images:clock"  # a counter, not wall time: replicas' clocks may differ
_IMAGE = PREFIX + "image:"
_SECRET = PREFIX + "id-secret"

_PUT = """
local lru, sizes, total, key, clock = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local owners, owned, mine = KEYS[6], KEYS[7], KEYS[8]
local id, ttl = ARGV[1], tonumber(ARGV[3])
local max_n, max_b, prefix = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local owner, tenant_max, tenant_prefix = ARGV[7], tonumber(ARGV[8]), ARGV[9]
local size = string.len(ARGV[2])
local function drop(victim)
  redis.call('ZREM', lru, victim)
  redis.call('DEL', prefix .. victim)
  local s = redis.call('HGET', sizes, victim)
  local o = redis.call('HGET', owners, victim)
  if s then
    redis.call('DECRBY', total, s)
    redis.call('HDEL', sizes, victim)
    if o then redis.call('HINCRBY', owned, o, -tonumber(s)) end
  end
  if o then
    redis.call('ZREM', tenant_prefix .. o, victim)
    redis.call('HDEL', owners, victim)
  end
end
drop(id)
if tenant_max >= 0 then
  while tonumber(redis.call('HGET', owned, owner) or '0') + size > tenant_max do
    local oldest = redis.call('ZRANGE', mine, 0, 0)[1]
    if oldest == nil then break end
    drop(oldest)
  end
end
local now = redis.call('INCR', clock)
redis.call('SET', key, ARGV[2], 'PX', ttl)
redis.call('HSET', sizes, id, size)
redis.call('HSET', owners, id, owner)
redis.call('INCRBY', total, size)
redis.call('HINCRBY', owned, owner, size)
redis.call('ZADD', lru, now, id)
redis.call('ZADD', mine, now, id)
while redis.call('ZCARD', lru) > max_n or tonumber(redis.call('GET', total)) > max_b do
  local oldest = redis.call('ZRANGE', lru, 0, 0)[1]
  if oldest == nil or oldest == id then break end
  drop(oldest)
end
return size
"""

_GET = """
local owner = redis.call('HGET', KEYS[4], ARGV[1]) or ''
if ARGV[4] ~= '1' and owner ~= ARGV[3] then return nil end
local data = redis.call('GET', KEYS[1])
if data then
  local now = redis.call('INCR', KEYS[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('ZADD', KEYS[2], 'XX', now, ARGV[1])
  redis.call('ZADD', ARGV[5] .. owner, 'XX', now, ARGV[1])
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
        tenant_max_bytes: int | None = None,
        secret: bytes | None = None,
    ) -> None:
        # Any: redis-py types each reply as raw or decoded; this client's are raw bytes.
        self._client: Any = client
        self._put: Any = client.register_script(_PUT)
        self._get: Any = client.register_script(_GET)
        self.max_images = max_images
        self.max_bytes = max_bytes
        self.tenant_max_bytes = tenant_max_bytes
        self._ttl_ms = max(int(ttl_s * 1000), 1)
        self._retry_after_s = retry_after_s
        self._ids = ImageIds(secret) if secret is not None else None

    def _image_ids(self) -> ImageIds:
        """The ids' keys; without a configured secret, the one every replica finds in Redis
        (the first to look stores a random one). Called inside `outage_is_503`."""
        if self._ids is None:
            self._client.set(_SECRET, os.urandom(32), nx=True)
            self._ids = ImageIds(self._client.get(_SECRET))
        return self._ids

    def put(self, data: bytes, tenant: Tenant) -> str:
        size, limit = len(data), self.tenant_max_bytes
        if limit is not None and size > limit:
            raise over_tenant_limit(size, limit)
        if size > self.max_bytes:
            raise over_store_limit(size, self.max_bytes)
        with outage_is_503(self._retry_after_s):
            image_id = self._image_ids().id_for(tenant.name, data)
            owner = tenant.name
            keys = [_LRU, _SIZES, _BYTES, _IMAGE + image_id, _CLOCK, _OWNERS, _OWNED]
            keys.append(_TENANT_LRU + owner)
            args = [image_id, data, self._ttl_ms, self.max_images, self.max_bytes, _IMAGE]
            args += [owner, -1 if limit is None else limit, _TENANT_LRU]
            self._put(keys=keys, args=args)
        return image_id

    def get(self, image_id: str, tenant: Tenant) -> bytes:
        if not IMAGE_ID.match(image_id):
            raise not_found(image_id)
        keys = [_IMAGE + image_id, _LRU, _CLOCK, _OWNERS]
        args = [image_id, self._ttl_ms, tenant.name, int(tenant.admin), _TENANT_LRU]
        with outage_is_503(self._retry_after_s):
            data = self._get(keys=keys, args=args)
        if data is None:
            raise not_found(image_id)
        return data

    def owned_bytes(self, tenant: str) -> int:
        """Bytes of uploads `tenant` keeps in Redis (expired ones until eviction drops them)."""
        with outage_is_503(self._retry_after_s):
            return int(self._client.hget(_OWNED, tenant) or 0)
