"""The Lua scripts of view counting (layout v2). Each runs atomically inside Redis.

Every script declares every key it touches in KEYS, and all of them belong to one partition
(one hash tag), so each call runs on one Redis Cluster slot.
"""

from kaleido.gateways import Script
from kaleido.views.dedup import BUCKET_CAP, MAX_DEPTH, MIN_DEPTH, TICKS, VIEW_HEADER

# Per view: decide from the dedup buckets (kaleido.views.dedup) whether it counts; if so, store
# the pair's time and add one to the post's counter. With a replay batch id, the call is a
# journal replay: applied once per batch and partition (the id goes into `replayed` and the
# epoch moves, atomically with the counts).
#
# KEYS: 1 counts, 2 epoch, 3 replayed, 4 this window's directory, 5 the previous window's,
#       then buckets (and v1 dedup flags during a takeover), referenced by index from ARGV[5].
# ARGV: 1 the window the caller addressed, 2 the window length (ms), 3 replay batch id or '',
#       4 the time in unix ms, or '' for Redis' own clock (TIME; only tests pass one),
#       5 the views, packed (VIEW_HEADER, then the packed pair and the post id in decimal):
#       one argument for the whole call spares the client most of its command encoding.
# Returns {'ok', window, flags, pending posts, buckets over BUCKET_CAP...}: flags has one
# character per view, '1' counted, '0' duplicate; the full buckets (KEYS indexes) are for the
# caller to split with SPLIT_BUCKET. {'stale', window}: the caller's window or directory copy
# was out of date and nothing was written; {'done', window}: the replay batch was applied before.
RECORD_VIEWS = Script(
    "record_views_v2",
    """
local D0, CAP, TICKS = MIN_DEPTH, BUCKET_CAP, TICK_COUNT
local ms = tonumber(ARGV[4])
if not ms then
  local now = redis.call('TIME')
  ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end
local W = tonumber(ARGV[2])
local w = math.floor(ms / W)
if w ~= tonumber(ARGV[1]) then return {'stale', tostring(w)} end
local batch = ARGV[3]
if batch ~= '' and redis.call('ZSCORE', KEYS[3], batch) then return {'done', tostring(w)} end

local dir = redis.call('GET', KEYS[4])
local ydir = redis.call('GET', KEYS[5])
local function depth_at(d, low)
  if not d then return D0 end
  return string.byte(d, low % #d + 1)
end
-- Unpack every view and check its addressing before writing anything: all or nothing.
local views, blob, pos = {}, ARGV[5], 1
while pos <= #blob do
  local low, depth, old_depth, bucket, old, v1, field_size, post_size, at =
    struct.unpack('VIEW_HEADER', blob, pos)
  if depth_at(dir, low) ~= depth or depth_at(ydir, low) ~= old_depth then
    return {'stale', tostring(w)}
  end
  local field = string.sub(blob, at, at + field_size - 1)
  local post = string.sub(blob, at + field_size, at + field_size + post_size - 1)
  views[#views + 1] = {field, post, bucket, old, v1}
  pos = at + field_size + post_size
end

local tick = math.ceil(W / TICKS)
local stamp = math.ceil((ms - w * W) / tick)
-- A stored time is rounded up to a tick (never early), and at most the window's end (so that
-- the next window's lookup finds it): min(stamp * tick, W) from the window's start.
local horizon = ms - w * W  -- a previous-window time at or below this is a TTL old
local expire = (w + 2) * W
local flags, adds, full = {}, {}, {}
for _, view in ipairs(views) do
  local field, post, bucket = view[1], view[2], KEYS[view[3]]
  -- Counted in the previous window less than a TTL ago, or (during a takeover) by v1?
  local last = redis.call('HGET', KEYS[view[4]], field)
  local seen = last and math.min(tonumber(last) * tick, W) > horizon
  if not seen and view[5] > 0 then seen = redis.call('EXISTS', KEYS[view[5]]) == 1 end
  -- Any time in this window's bucket is less than a TTL ago: HSETNX decides and stores.
  if not seen then seen = redis.call('HSETNX', bucket, field, stamp) == 0 end
  if seen then
    flags[#flags + 1] = '0'
  else
    flags[#flags + 1] = '1'
    adds[post] = (adds[post] or 0) + 1
    local size = redis.call('HLEN', bucket)
    if size == 1 then
      redis.call('PEXPIREAT', bucket, expire)
    elseif size > CAP then
      full[view[3]] = true
    end
  end
end
for post, n in pairs(adds) do
  redis.call('HINCRBY', KEYS[1], post, n)
end
if batch ~= '' then
  redis.call('ZADD', KEYS[3], math.floor(ms / 1000), batch)
  redis.call('INCR', KEYS[2])
end
local out = {'ok', tostring(w), table.concat(flags), redis.call('HLEN', KEYS[1])}
for index in pairs(full) do out[#out + 1] = index end
return out
""".replace("MIN_DEPTH", str(MIN_DEPTH))
    .replace("BUCKET_CAP", str(BUCKET_CAP))
    .replace("TICK_COUNT", str(TICKS))
    .replace("VIEW_HEADER", VIEW_HEADER),
)

# Split one dedup bucket of depth ARGV[1] and address ARGV[2] (kaleido.views.dedup): the
# fields whose user has bit `depth` set move to the other half, and the directory records
# depth + 1 for both. Nothing happens unless the directory still gives the bucket that depth
# and it still holds more than BUCKET_CAP fields (another process may have split it).
# KEYS: the window's directory, the bucket, its other half. ARGV: depth, address, expiry (ms).
# Returns the directory as it is now ('' when the window has none).
SPLIT_BUCKET = Script(
    "split_bucket_v2",
    """
local D0, DMAX, CAP = MIN_DEPTH, MAX_DEPTH, BUCKET_CAP
local depth, address = tonumber(ARGV[1]), tonumber(ARGV[2])
local dir = redis.call('GET', KEYS[1])
local d = dir or string.rep(string.char(D0), 2 ^ D0)
if string.byte(d, address % #d + 1) ~= depth or depth >= DMAX
    or redis.call('HLEN', KEYS[2]) <= CAP then
  return dir or ''
end
local function user_bit(field)
  local j = depth - D0
  local at = math.floor(j / 8)
  if at >= math.ceil(#field / 2) then return 0 end
  return math.floor(string.byte(field, at + 1) / 2 ^ (j % 8)) % 2
end
local entries = redis.call('HGETALL', KEYS[2])
local names, moved = {}, {}
for k = 1, #entries, 2 do
  if user_bit(entries[k]) == 1 then
    names[#names + 1] = entries[k]
    moved[#moved + 1] = entries[k]
    moved[#moved + 1] = entries[k + 1]
  end
end
if #names > 0 then
  redis.call('HDEL', KEYS[2], unpack(names))
  redis.call('HSET', KEYS[3], unpack(moved))
  redis.call('PEXPIREAT', KEYS[3], ARGV[3])
end
-- Every directory slot of the bucket (address mod 2^depth) now says depth + 1; a bucket as
-- deep as the directory doubles it first.
if 2 ^ depth >= #d then d = d .. d end
local pieces, previous, mark = {}, 0, string.char(depth + 1)
for index = address, #d - 1, 2 ^ depth do
  pieces[#pieces + 1] = string.sub(d, previous + 1, index)
  pieces[#pieces + 1] = mark
  previous = index + 1
end
pieces[#pieces + 1] = string.sub(d, previous + 1)
d = table.concat(pieces)
redis.call('SET', KEYS[1], d, 'PXAT', ARGV[3])
return d
""".replace("MIN_DEPTH", str(MIN_DEPTH))
    .replace("MAX_DEPTH", str(MAX_DEPTH))
    .replace("BUCKET_CAP", str(BUCKET_CAP)),
)

# Move up to ARGV[2] of a partition's counters into the in-flight batch ARGV[1].
# KEYS: counts, the partition's batch set, the batch hash, epoch.
# Returns {posts taken, views moved, post, views, post, views, ...}. A counter that is not a
# positive integer is left where it is (and stays visible to readers) rather than guessed at.
MOVE_TO_BATCH = Script(
    "move_to_batch_v2",
    """
local size = redis.call('HLEN', KEYS[1])
if size == 0 then return {0, 0} end
local entries
if size <= tonumber(ARGV[2]) then
  entries = redis.call('HGETALL', KEYS[1])
else
  entries = redis.call('HRANDFIELD', KEYS[1], ARGV[2], 'WITHVALUES')
end
local out, views, taken = {0, 0}, 0, {}
for first = 1, #entries, 2 * GROUP do
  local names, fields = {}, {}
  for k = first, math.min(first + 2 * GROUP - 1, #entries), 2 do
    local n = tonumber(entries[k + 1])
    if n and n > 0 and n == math.floor(n) then
      names[#names + 1] = entries[k]
      fields[#fields + 1] = entries[k]
      fields[#fields + 1] = entries[k + 1]
      out[#out + 1] = entries[k]
      out[#out + 1] = entries[k + 1]
      views = views + n
    end
  end
  if #names > 0 then
    redis.call('HDEL', KEYS[1], unpack(names))
    redis.call('HSET', KEYS[3], unpack(fields))
  end
end
out[1], out[2] = #entries / 2, views
if #out > 2 then
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('INCR', KEYS[4])
end
return out
""".replace("GROUP", "1000"),  # well below Lua's limit on unpack()ed arguments
)

# A post's Redis side at one instant. KEYS: epoch, counts, replayed, batch set, then the batch
# hashes the caller expects (their ids in ARGV after the post id). Returns
# {'ok', epoch, counter, replay batches (space-separated), batch id, views, ...}, or
# {'retry', batch ids...} when the partition's in-flight batches are not the expected ones.
SNAPSHOT_POST = Script(
    "snapshot_post_v2",
    """
local members = redis.call('SMEMBERS', KEYS[4])
local expected = {}
for i = 2, #ARGV do expected[ARGV[i]] = true end
local same = #members == #ARGV - 1
for _, member in ipairs(members) do
  if not expected[member] then same = false end
end
if not same then
  table.insert(members, 1, 'retry')
  return members
end
local out = {
  'ok',
  redis.call('GET', KEYS[1]) or '0',
  redis.call('HGET', KEYS[2], ARGV[1]) or '0',
  table.concat(redis.call('ZRANGE', KEYS[3], 0, -1), ' '),
}
for i = 5, #KEYS do
  local views = redis.call('HGET', KEYS[i], ARGV[1])
  if views then
    out[#out + 1] = ARGV[i - 3]
    out[#out + 1] = views
  end
end
return out
""",
)
