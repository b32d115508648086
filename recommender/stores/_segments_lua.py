"""The Lua scripts of the Redis segment store (``recommender/stores/segments.py``).

Each runs as one atomic step, so a reader sees one published version, never a mix.
"""

__all__ = ["_READ_LUA", "_VIEWER_LUA", "_PUBLISH_LUA"]


# The segment read shared by both scripts below: follow the pointer, then read one user's
# segment and preference hashes of that version, and the cold-start cluster of the user's own
# region/platform when the user has no cluster. Keys are built in the script because they
# depend on the pointer; that is fine on a single Redis (not Redis Cluster).
_SEGMENT_LUA = """
local function read_user(p, ver, cold_key, uid)
  local seg = {}
  if ver then seg = redis.call('HGETALL', p .. 'seg:' .. ver .. ':u:' .. uid) end
  local pref = redis.call('HGETALL', p .. 'pref:' .. uid)
  local own = ''
  local cluster = nil
  if #seg > 0 then
    local f = {}
    for j = 1, #seg, 2 do f[seg[j]] = seg[j + 1] end
    cluster = f['cluster']
    if not cluster and (f['region'] or f['platform']) then
      local c = redis.call('HMGET', cold_key, 'region:' .. (f['region'] or ''), 'platform:' .. (f['platform'] or ''))
      own = c[1] or c[2] or ''
    end
  end
  return seg, pref, own, cluster
end
"""

# One atomic step for many users. ARGV: prefix, region cohort, platform cohort, user ids...
# Reply: version, the request's cold-start clusters (region, platform, all), then per user:
# segment hash, preference hash, own cold-start cluster ('' when none).
_READ_LUA = _SEGMENT_LUA + """
local p = ARGV[1]
local ver = redis.call('GET', p .. 'seg:current')
local out = {ver or ''}
local cold_key = ver and (p .. 'seg:' .. ver .. ':cold')
if ver then
  out[2] = redis.call('HMGET', cold_key, ARGV[2], ARGV[3], 'all')
else
  out[2] = {}
end
for i = 4, #ARGV do
  local seg, pref, own = read_user(p, ver, cold_key, ARGV[i])
  out[#out + 1] = seg
  out[#out + 1] = pref
  out[#out + 1] = own
end
return out
"""

# Everything a feed request needs from Redis, in one round trip. ARGV: prefix, region
# cohort, platform cohort, user id ('' anonymous), session key ('' none), session items.
# Reply: version, cold-start clusters, segment hash, preference hash, own cold-start
# cluster, the session's items newest first, and the centroid of the cluster the viewer
# ends up with (their own, else the cold-start one; '' when none), as ``merge_user_segments`` picks it.
_VIEWER_LUA = _SEGMENT_LUA + """
local p = ARGV[1]
local ver = redis.call('GET', p .. 'seg:current')
local cold_key = ver and (p .. 'seg:' .. ver .. ':cold')
local cold = {}
if ver then cold = redis.call('HMGET', cold_key, ARGV[2], ARGV[3], 'all') end
local seg, pref, own, cluster = {}, {}, '', nil
if ARGV[4] ~= '' then seg, pref, own, cluster = read_user(p, ver, cold_key, ARGV[4]) end
local session = {}
if ARGV[5] ~= '' then session = redis.call('LRANGE', ARGV[5], 0, tonumber(ARGV[6]) - 1) end
if not cluster and own ~= '' then cluster = own end
if not cluster then cluster = cold[1] or cold[2] or cold[3] end
local centroid = ''
if ver and cluster then centroid = redis.call('HGET', p .. 'seg:' .. ver .. ':centroids', cluster) or '' end
return {ver or '', cold, seg, pref, own, session, centroid}
"""


# Publishing only versions that were started keeps a typo from pointing readers at nothing.
_PUBLISH_LUA = """
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return redis.error_reply('unknown version ' .. ARGV[1])
end
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
return old
"""
