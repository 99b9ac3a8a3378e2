"""Dead letters written straight in the store's format (``hookfan/keys.py``) by a Lua seeder,
so a test can hold 200,000 of them in about a second: the request hash (``n`` = 1, a small
body), the ``hookfan:dead`` entry, the ``hookfan:dl`` record and the per-pair count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ROUTES = ("shop/orders", "shop/refunds", "billing/invoices")
REASONS = ("HTTP 404 is not retryable", "MaxRetryAgeExceeded")
BLOCK = 10_000


def url_of(route: str) -> str:
    return f"http://{route.replace('/', '-')}.svc:8080/hook"


@dataclass(frozen=True)
class Seeded:
    ids: list[str]
    dead_at: dict[str, int]
    """Delivery id -> ms (Redis clock) it was dead-lettered."""
    route: dict[str, str]
    reason: dict[str, str]
    now: int
    """Redis's clock (ms) when seeded."""

    def select(self, route: str | None = None, reason: str | None = None,
               since_ms: int | None = None) -> list[str]:
        return [d for d in self.ids
                if (route is None or self.route[d] == route)
                and (reason is None or reason in self.reason[d])
                and (since_ms is None or self.dead_at[d] >= since_ms)]


# Writes a block of dead letters inside Redis (the test's own script: it names its keys in
# ARGV, not KEYS, which a single test Redis allows; hookfan's scripts never do that).
SEEDER = """
local start, n, now, span, total, every = tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local sized = ARGV[7] == '1'
local routes = {'shop/orders', 'shop/refunds', 'billing/invoices'}
for i = start, start + n - 1 do
  local rid = string.format('r%07d', i)
  local route = routes[(i % 3) + 1]
  local url = 'http://' .. string.gsub(route, '/', '-') .. '.svc:8080/hook'
  local reason = 'MaxRetryAgeExceeded'
  if i % every == 0 then reason = 'HTTP 404 is not retryable' end
  local t = now - span + math.floor(i * span / total)
  local size = 10 + i % 50
  redis.call('HSET', 'hookfan:req:' .. rid, 'm', 'POST', 'u', '/hook?n=' .. i, 'h', '[]',
             'b', string.rep('x', size), 't', string.format('%.3f', t / 1000), 'n', 1)
  local record = {url, route, 1, 3, t - 60000, reason}
  if sized then
    record[7] = size
    redis.call('HINCRBY', 'hookfan:dlcount', route .. ' ' .. url, 1)
  end
  redis.call('HSET', 'hookfan:dl', rid .. '-0', cjson.encode(record))
  redis.call('ZADD', 'hookfan:dead', t, rid .. '-0')
end
"""


def seed(r: Any, count: int, span_ms: int = 48 * 3600 * 1000, every_404: int = 25,
         sized: bool = True) -> Seeded:
    """``count`` dead letters over the last ``span_ms``, oldest first, one request each; the
    routes take turns (:data:`ROUTES`), every ``every_404``-th is a 404 and the rest ran out
    of retry age. ``sized`` False writes records as hookfan did before it kept body sizes and
    counts."""
    secs, micros = r.time()
    now = int(secs) * 1000 + int(micros) // 1000
    script = r.register_script(SEEDER)
    for start in range(0, count, BLOCK):
        script(args=[start, min(BLOCK, count - start), now, span_ms, count, every_404,
                     "1" if sized else "0"])
    ids = [f"r{i:07d}-0" for i in range(count)]
    return Seeded(ids, {d: now - span_ms + (i * span_ms) // count for i, d in enumerate(ids)},
                  {d: ROUTES[i % 3] for i, d in enumerate(ids)},
                  {d: REASONS[0] if i % every_404 == 0 else REASONS[1]
                   for i, d in enumerate(ids)}, now)
