"""The Lua scripts of view counting (layout v2). Each runs atomically inside Redis.

Every script declares every key it touches in KEYS. On Redis Cluster every call's keys belong
to one partition (one hash tag), so each call runs on one slot.
"""

from kaleido.gateways import Script
from kaleido.views.dedup import (
    BUCKET_CAP,
    GROUP_HEADER,
    MAX_DEPTH,
    MIN_DEPTH,
    NEARLY_FULL,
    TICKS,
    VIEW_HEADER,
)
from kaleido.views.moves import again_lua, mark_lua

# Per view: decide from the dedup buckets (kaleido.views.dedup) whether it counts; if so, store
# the pair's time and add one to the post's counter. With a replay batch id, the call is a
# journal replay: applied once per batch and partition (the id goes into the partition's
# `replayed` set and its epoch moves, atomically with the counts).
#
# A call carries groups of views, one group per partition. On Redis Cluster a call carries one
# group (its keys share the partition's slot); a single Redis takes a whole batch in one call.
# KEYS: every key a group names (its counts, epoch, replayed set, the window's directory and
#       the previous window's, buckets, v1 dedup flags during a takeover), by index from ARGV[5].
# ARGV: 1 the window the caller addressed, 2 the window length (ms), 3 replay batch id or '',
#       4 the time in unix ms, or '' for Redis' own clock (TIME; only tests pass one),
#       5 the groups, packed: GROUP_HEADER, then per view VIEW_HEADER, the packed pair and the
#       post id in decimal. One argument for the whole call spares the client most of its
#       command encoding.
# A bucket past BUCKET_CAP fields splits (its users with bit `depth` set move to the other
# half, and the directory says depth + 1 for both) when the caller named its other half; the
# caller names it for the buckets this script reported nearly full.
# Returns {'ok', window, flags, pending posts per group (space-separated), number of new
# directories, then (group number, directory) for each, then the nearly full buckets' KEYS
# indexes}: flags has one character per view, '1' counted, '0' duplicate. A group whose replay
# was applied before counts nothing. {'stale', window}: the caller's window or a directory copy
# was out of date and nothing was written.
# Ambiguous call (its reply lost after it ran; redis-py sends it again, or the ingester gives
# up and journals the views): run again, every view's pair is found stored and counts nothing
# more, and a replay's batch id is found in `replayed`. The count stays exact; only the second
# reply's flags call the first run's views duplicates (docs/ambiguity.md).
RECORD_VIEWS = Script(
    "record_views_v2",
    """
local D0, DMAX, CAP, NEAR, TICKS = MIN_DEPTH, MAX_DEPTH, BUCKET_CAP, NEARLY_FULL, TICK_COUNT
local ms = tonumber(ARGV[4])
if not ms then
  local now = redis.call('TIME')
  ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end
local W = tonumber(ARGV[2])
local w = math.floor(ms / W)
if w ~= tonumber(ARGV[1]) then return {'stale', tostring(w)} end
local batch = ARGV[3]

local function depth_at(d, low)
  if not d then return D0 end
  return string.byte(d, low % #d + 1)
end
-- Unpack every view and check its addressing before writing anything: all or nothing.
local groups, lows, depths, fields, posts = {}, {}, {}, {}, {}
local buckets, others, olds, v1s = {}, {}, {}, {}
local blob, pos, n = ARGV[5], 1, 0
while pos <= #blob do
  local counts, epoch, replayed, dir_key, old_dir_key, size, at =
    struct.unpack('GROUP_HEADER', blob, pos)
  pos = at
  local dir, old_dir = redis.call('GET', KEYS[dir_key]), redis.call('GET', KEYS[old_dir_key])
  groups[#groups + 1] = {counts, epoch, replayed, n + 1, n + size, dir_key, dir}
  for _ = 1, size do
    local low, depth, old_depth, bucket, other, old, v1, field_size, post_size, after =
      struct.unpack('VIEW_HEADER', blob, pos)
    -- A bucket split since the caller read the directory is found in its named other half.
    local now_depth = depth_at(dir, low)
    if (now_depth ~= depth and not (now_depth == depth + 1 and other > 0))
        or depth_at(old_dir, low) ~= old_depth then
      return {'stale', tostring(w)}
    end
    n = n + 1
    lows[n], depths[n], buckets[n], others[n], olds[n], v1s[n] = low, depth, bucket, other, old, v1
    fields[n] = string.sub(blob, after, after + field_size - 1)
    posts[n] = string.sub(blob, after + field_size, after + field_size + post_size - 1)
    pos = after + field_size + post_size
  end
end

local function user_bit(field, depth)
  local j = depth - D0
  local at = math.floor(j / 8)
  if at >= math.ceil(#field / 2) then return 0 end
  return math.floor(string.byte(field, at + 1) / 2 ^ (j % 8)) % 2
end

local expire = (w + 2) * W
-- Split a bucket of depth `depth` and address `address` into itself and `other`; return the
-- directory with depth + 1 in each of the bucket's slots (doubled first if it is that deep).
local function split(bucket, other, depth, address, dir)
  local entries = redis.call('HGETALL', bucket)
  local halves = {{}, {}}
  for k = 1, #entries, 2 do
    local half = halves[user_bit(entries[k], depth) + 1]
    half[#half + 1] = entries[k]
    half[#half + 1] = entries[k + 1]
  end
  -- Both halves are written anew: HDEL of half the fields would scan the listpack per field.
  redis.call('DEL', bucket)
  for k, key in ipairs({bucket, other}) do
    if #halves[k] > 0 then
      redis.call('HSET', key, unpack(halves[k]))
      redis.call('PEXPIREAT', key, expire)
    end
  end
  local d = dir or string.rep(string.char(D0), 2 ^ D0)
  if 2 ^ depth >= #d then d = d .. d end
  local pieces, previous, mark = {}, 0, string.char(depth + 1)
  for index = address, #d - 1, 2 ^ depth do
    pieces[#pieces + 1] = string.sub(d, previous + 1, index)
    pieces[#pieces + 1] = mark
    previous = index + 1
  end
  pieces[#pieces + 1] = string.sub(d, previous + 1)
  return table.concat(pieces)
end

local tick = math.ceil(W / TICKS)
local stamp = math.ceil((ms - w * W) / tick)
-- A stored time is rounded up to a tick (never early), and at most the window's end (so that
-- the next window's lookup finds it): min(stamp * tick, W) from the window's start.
local horizon = ms - w * W  -- a previous-window time at or below this is a TTL old
local flags, pending, near, new_dirs = {}, {}, {}, {}
for g, group in ipairs(groups) do
  local dir, split_here = group[7], {}
  local applied = batch ~= '' and redis.call('ZSCORE', KEYS[group[3]], batch)
  local adds = {}
  for i = group[4], group[5] do
    -- A bucket split since the caller read the directory (earlier in this call, or by another
    -- call): the view's pair is in one of its halves.
    local bucket, depth = buckets[i], depths[i]
    local own = depth_at(dir, lows[i]) == depth
    if not own and user_bit(fields[i], depth) == 1 then bucket = others[i] end
    local seen = applied
    if not seen then
      -- Counted in the previous window less than a TTL ago, or (in a takeover) by v1?
      local last = redis.call('HGET', KEYS[olds[i]], fields[i])
      seen = last and math.min(tonumber(last) * tick, W) > horizon
      if not seen and v1s[i] > 0 then seen = redis.call('EXISTS', KEYS[v1s[i]]) == 1 end
      -- Any time in this window's bucket is less than a TTL ago: HSETNX decides and stores.
      if not seen then seen = redis.call('HSETNX', KEYS[bucket], fields[i], stamp) == 0 end
    end
    if seen then
      flags[i] = '0'
    else
      flags[i] = '1'
      adds[posts[i]] = (adds[posts[i]] or 0) + 1
      local size = redis.call('HLEN', KEYS[bucket])
      if size == 1 then
        redis.call('PEXPIREAT', KEYS[bucket], expire)
      elseif size > CAP and own and others[i] > 0 and depth < DMAX and not split_here[bucket] then
        split_here[bucket] = true
        dir = split(KEYS[bucket], KEYS[others[i]], depth, lows[i] % 2 ^ depth, dir)
        near[bucket] = nil
      elseif size >= NEAR and own then
        near[bucket] = true
      end
    end
  end
  for post, views in pairs(adds) do
    redis.call('HINCRBY', KEYS[group[1]], post, views)
  end
  if batch ~= '' and not applied then
    redis.call('ZADD', KEYS[group[3]], math.floor(ms / 1000), batch)
    redis.call('INCR', KEYS[group[2]])
  end
  if dir ~= group[7] then
    redis.call('SET', KEYS[group[6]], dir, 'PXAT', expire)
    new_dirs[#new_dirs + 1] = g
    new_dirs[#new_dirs + 1] = dir
  end
  pending[#pending + 1] = redis.call('HLEN', KEYS[group[1]])
end
local out = {'ok', tostring(w), table.concat(flags), table.concat(pending, ' '), #new_dirs / 2}
for _, item in ipairs(new_dirs) do out[#out + 1] = item end
for index in pairs(near) do out[#out + 1] = index end
return out
""".replace("MIN_DEPTH", str(MIN_DEPTH))
    .replace("MAX_DEPTH", str(MAX_DEPTH))
    .replace("BUCKET_CAP", str(BUCKET_CAP))
    .replace("NEARLY_FULL", str(NEARLY_FULL))
    .replace("TICK_COUNT", str(TICKS))
    .replace("GROUP_HEADER", GROUP_HEADER)
    .replace("VIEW_HEADER", VIEW_HEADER),
)

# Move up to ARGV[2] of a partition's counters into the in-flight batch ARGV[1].
# KEYS: counts, the partition's batch set, the batch hash, epoch, the moved batch ids.
# Returns {'moved', posts taken, views moved, post, views, post, views, ...}. A counter that is
# not a positive integer is left where it is (and stays visible to readers) rather than
# guessed at. It moves memory rather than adding any, so it runs even past maxmemory: the
# sync drains a full Redis.
# Run again for a batch id it moved before (its reply was lost and redis-py sent it again, or
# it ran late), it moves nothing and answers {'again', posts, views, post, views, ...}: the
# batch as it is, or {'stale', 0, 0} once the batch was applied and forgotten
# (kaleido.views.moves).
MOVE_TO_BATCH = Script(
    "move_to_batch_v2",
    (
        again_lua(moved=5, batch_id=1)
        + """
local size = redis.call('HLEN', KEYS[1])
if size == 0 then return {'moved', 0, 0} end
local entries
if size <= tonumber(ARGV[2]) then
  entries = redis.call('HGETALL', KEYS[1])
else
  entries = redis.call('HRANDFIELD', KEYS[1], ARGV[2], 'WITHVALUES')
end
local out, views, taken = {'moved', 0, 0}, 0, {}
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
out[2], out[3] = #entries / 2, views
if #out > 3 then
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('INCR', KEYS[4])
"""
        + mark_lua(moved=5, batch_id=1)
        + """
end
return out
"""
    ).replace("GROUP", "1000"),  # well below Lua's limit on unpack()ed arguments
    allow_oom=True,
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
    read_only=True,
)
