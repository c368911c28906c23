"""What one request may cost the collector: JSON values per body, events per second per key.

Validation is pure Python (RFC 8785 alone is about 1 to 3 µs per JSON value),
so a 1 MiB body of tiny nested values used to cost over a second of CPU. The
value count is bounded before parsing, from the bytes (C-speed counting), and
what remains runs off the event loop when the body is large.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable

# JSON values a body may hold (every array element and object member counts, and
# the containers themselves): 500 events of ordinary size hold about 5,000.
MAX_NODES = 50_000
STRING_RE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def _bound(text: bytes) -> int:
    return 1 + text.count(b",") + text.count(b"[") + text.count(b"{")


def json_nodes(body: bytes, cap: int = MAX_NODES) -> int:
    """An upper bound of the values in a JSON text: 1 + commas + opening brackets,
    outside strings. Strings are only stripped when the raw count (which counts
    the commas inside them too) is over `cap`, so ordinary bodies cost three
    `bytes.count` calls."""
    raw = _bound(body)
    return raw if raw <= cap else _bound(STRING_RE.sub(b'""', body))


class RateLimiter:
    """A token bucket per key: `rate` events per second, up to `burst` at once.

    Per process: with N collectors behind a load balancer a key may send up to
    N times the rate (a client on one keep-alive connection reaches one collector).
    Buckets of the least recently seen keys are forgotten past `max_keys`
    (a forgotten key starts with a full bucket again)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, n: int) -> int:
        """0 if `n` events may go now (they are taken), else the whole seconds to
        wait before they could."""
        if self.rate <= 0:
            return 0
        now = self.clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        wait = 0
        if tokens >= n:
            tokens -= n
        else:
            wait = max(1, math.ceil((n - tokens) / self.rate))
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait
