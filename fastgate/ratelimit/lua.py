"""The Redis script that decides a batch of checks atomically, with Redis's own clock.

One EVALSHA carries every check a worker collected in one batch (in Redis
Cluster: every check of one hash tag). Per check, all its limits are read
first; only if every one admits the request are they all written (one SET
with an expiry per limit), so a denied request consumes nothing. The
formulas are those of algorithms.py, in integer microseconds from TIME.

KEYS: the counters of all checks, check after check (only the limits that apply).
ARGV: per check: n, the number of its keys (-n: "quiet", see Reply), then
      per key five integers: algorithm (1 gcra, 2 sliding window, 3 fixed
      window), count, period_us, capacity (count + burst) and interval_us
      (ceil(period_us / count)).
Reply: per check: 1 if admitted (and counted) else 0, then per key three
      integers as the client is told: remaining, reset_us, retry_us; a quiet
      check (no headers on admitted responses) that was admitted gets the 1
      alone, which saves most of the reply under load.

Stored values: gcra "tat"; sliding window "index:previous:current"; fixed
window "index:count"; each with PX set to when it means the same as no value.
"""

from hashlib import sha1

ALGORITHM_CODES = {"gcra": 1, "sliding_window": 2, "fixed_window": 3}

SCRIPT = r"""
local function idiv(x, y)
  local q = math.floor(x / y)
  if q * y > x then q = q - 1 elseif (q + 1) * y <= x then q = q + 1 end
  return q
end
local function ms(us)
  return math.max(1, math.ceil(us / 1000))
end
local function gcra(raw, now, cap, t)
  local tat = tonumber(raw)
  if not tat or tat < now then tat = now end
  local remaining = idiv(now + cap * t - tat, t)
  if remaining >= 1 then
    local new = tat + t
    return {true, remaining, tat - now, 0, string.format('%d', new), ms(new - now), new - now}
  end
  return {false, 0, tat - now, tat + t - cap * t - now}
end
local function sreset(period, elapsed, prev, cur)
  if cur > 0 then return 2 * period - elapsed end
  if prev > 0 then return period - elapsed end
  return 0
end
local function sliding(raw, now, count, period)
  local index = idiv(now, period)
  local elapsed = now - index * period
  local prev, cur = 0, 0
  if raw then
    local i, p, c = string.match(raw, '^(%d+):(%d+):(%d+)$')
    i = tonumber(i)
    if i == index then prev = tonumber(p); cur = tonumber(c)
    elseif i == index - 1 then prev = tonumber(c) end
  end
  local estimate = prev * (period - elapsed) / period + cur
  local remaining = math.max(0, math.floor(count - estimate))
  local reset = sreset(period, elapsed, prev, cur)
  if estimate + 1 <= count then
    return {true, remaining, reset, 0, string.format('%d:%d:%d', index, prev, cur + 1),
            ms(2 * period - elapsed), sreset(period, elapsed, prev, cur + 1)}
  end
  local retry
  if cur + 1 <= count then
    retry = math.ceil(period * (1 - (count - 1 - cur) / prev)) - elapsed
  else
    retry = period - elapsed + math.ceil(period * (1 - (count - 1) / cur))
  end
  return {false, 0, reset, math.max(1, retry)}
end
local function fixed(raw, now, count, period)
  local index = idiv(now, period)
  local cur = 0
  if raw then
    local i, c = string.match(raw, '^(%d+):(%d+)$')
    if tonumber(i) == index then cur = tonumber(c) end
  end
  local left = (index + 1) * period - now
  local reset = 0
  if cur > 0 then reset = left end
  if cur < count then
    return {true, count - cur, reset, 0, string.format('%d:%d', index, cur + 1), ms(left), left}
  end
  return {false, 0, reset, left}
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out, k, a, nargs = {}, 0, 1, #ARGV
while a <= nargs do
  local n = tonumber(ARGV[a])
  local quiet = n < 0
  if quiet then n = -n end
  a = a + 1
  local ok, res = true, {}
  for j = 1, n do
    local alg, count, period = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local raw = redis.call('GET', KEYS[k + j])
    local r
    if alg == 1 then r = gcra(raw, now, tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]))
    elseif alg == 2 then r = sliding(raw, now, count, period)
    else r = fixed(raw, now, count, period) end
    a = a + 5
    res[j] = r
    if not r[1] then ok = false end
  end
  out[#out + 1] = ok and 1 or 0
  for j = 1, n do
    local r = res[j]
    if ok then
      redis.call('SET', KEYS[k + j], r[5], 'PX', r[6])
      if not quiet then
        out[#out + 1] = r[2] - 1
        out[#out + 1] = r[7]
        out[#out + 1] = 0
      end
    else
      out[#out + 1] = r[2]
      out[#out + 1] = r[3]
      out[#out + 1] = r[4]
    end
  end
  k = k + n
end
return out
"""

SHA = sha1(SCRIPT.encode()).hexdigest()


class ScriptArgs:
    """The ARGV of one check: n (-n when quiet), then the five integers of each of its n limits;
    built once per route (and per subset of its limits that can apply), raw and as RESP bulk strings."""

    __slots__ = ("applied", "quiet", "args", "argc", "resp")

    def __init__(self, applied: tuple[int, ...], per_limit: list[tuple[bytes, ...]], quiet: bool) -> None:
        self.applied = applied
        """The route's limits these are for (indices), in order: the script answers for each."""
        self.quiet = quiet
        """An admitted check's reply is its 1 alone (nothing is shown on admitted responses)."""
        self.args = (b"%d" % (-len(per_limit) if quiet else len(per_limit)),
                     *(arg for limit in per_limit for arg in limit))
        """The raw arguments (for coredis)."""
        self.argc = len(self.args)
        self.resp = b"".join(b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in self.args)
        """The same, encoded for fastgate's RESP client."""
