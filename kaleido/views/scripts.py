"""The Lua scripts of view counting. Each runs atomically inside Redis, in one round trip.

Keys are built inside the scripts from the deployment prefix (ARGV) because one call touches
keys that depend on the batch's ids; Kaleido targets a single Redis (not Redis Cluster).
"""

from kaleido.gateways import Script

# Per view: SET the dedup flag NX EX ttl; only if it was set, INCR the counter and SADD pending.
# ARGV: prefix, ttl, then the views as ONE string "user,post,user,post,..." (decimal ids): one
# argument instead of two per view spares the client most of its command encoding. Returns
# {flags, pending_size}: flags has one character per view, "1" counted, "0" duplicate.
RECORD_VIEWS = Script(
    "record_views",
    """
local prefix, ttl = ARGV[1], ARGV[2]
local flags = {}
local pending = prefix .. 'pending:views'
for user, post in string.gmatch(ARGV[3], '(%d+),(%d+)') do
  if redis.call('SET', prefix .. 'user:view:' .. user .. ':' .. post, '1', 'NX', 'EX', ttl) then
    redis.call('INCR', prefix .. 'post:views:' .. post)
    redis.call('SADD', pending, post)
    flags[#flags + 1] = '1'
  else
    flags[#flags + 1] = '0'
  end
end
return {table.concat(flags), redis.call('SCARD', pending)}
""",
)

# Move up to ARGV[3] pending posts and their counters into the in-flight batch ARGV[2].
# KEYS: pending set, in-flight batch set, the batch hash, sync epoch. ARGV: prefix, id, count.
# Returns {posts popped, views moved, post, views, post, views, ...}: the batch's contents, so
# that the syncer needs no HGETALL for it. A counter that is not a positive integer is left
# where it is (and stays visible to readers) rather than guessed at. Counters are read, deleted
# and written MOVE_GROUP at a time (MGET, DEL, HSET of many): a few calls per thousand posts
# instead of three per post.
MOVE_TO_BATCH = Script(
    "move_to_batch",
    """
local popped = redis.call('SPOP', KEYS[1], ARGV[3])
local out, views = {#popped, 0}, 0
for first = 1, #popped, MOVE_GROUP do
  local posts, keys = {}, {}
  for i = first, math.min(first + MOVE_GROUP - 1, #popped) do
    posts[#posts + 1] = popped[i]
    keys[#keys + 1] = ARGV[1] .. 'post:views:' .. popped[i]
  end
  local values = redis.call('MGET', unpack(keys))
  local fields, moved_keys = {}, {}
  for i = 1, #posts do
    local value = values[i]
    local n = tonumber(value)
    if n and n > 0 and n == math.floor(n) then
      fields[#fields + 1] = posts[i]
      fields[#fields + 1] = value
      moved_keys[#moved_keys + 1] = keys[i]
      out[#out + 1] = posts[i]
      out[#out + 1] = value
      views = views + n
    end
  end
  if #moved_keys > 0 then
    redis.call('DEL', unpack(moved_keys))
    redis.call('HSET', KEYS[3], unpack(fields))
  end
end
out[2] = views
if #out > 2 then
  redis.call('SADD', KEYS[2], ARGV[2])
  redis.call('INCR', KEYS[4])
end
return out
""".replace("MOVE_GROUP", "1000"),  # well below Lua's limit on unpack()ed arguments
)

# A post's Redis side at one instant:
# {epoch, counter, replayed journal batches (space-separated), batch id, views, batch id, ...}.
# KEYS: sync epoch, in-flight batch set, the post's counter, journal done set.
# ARGV: prefix, post id.
SNAPSHOT_POST = Script(
    "snapshot_post",
    """
local out = {
  redis.call('GET', KEYS[1]) or '0',
  redis.call('GET', KEYS[3]) or '0',
  table.concat(redis.call('ZRANGE', KEYS[4], 0, -1), ' '),
}
for _, batch in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local views = redis.call('HGET', ARGV[1] .. 'view:batch:' .. batch, ARGV[2])
  if views then
    out[#out + 1] = batch
    out[#out + 1] = views
  end
end
return out
""",
)

# Replay journal views (taken while Redis was down) through the same dedup as RECORD_VIEWS,
# once per replay batch. KEYS: journal done zset (batch id → unix time), sync epoch.
# ARGV: prefix, ttl, batch id, then user, post pairs. Returns the number counted, or -1 if the
# batch was applied before.
REPLAY_JOURNAL = Script(
    "replay_journal",
    """
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  return -1
end
local prefix, ttl, counted = ARGV[1], ARGV[2], 0
for i = 4, #ARGV, 2 do
  local user, post = ARGV[i], ARGV[i + 1]
  if redis.call('SET', prefix .. 'user:view:' .. user .. ':' .. post, '1', 'NX', 'EX', ttl) then
    redis.call('INCR', prefix .. 'post:views:' .. post)
    redis.call('SADD', prefix .. 'pending:views', post)
    counted = counted + 1
  end
end
redis.call('ZADD', KEYS[1], redis.call('TIME')[1], ARGV[3])
redis.call('INCR', KEYS[2])
return counted
""",
)
