"""Per-client token buckets: how many calls a client may make, and when again.

A bucket holds up to ``burst`` tokens and refills at ``rate_per_s``; each call
takes one. A call that finds the bucket empty is refused with the time until
a token is back, which the caller passes on as a retry hint. The clock is
injected, so tests drive it instead of sleeping.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateDecision", "RateLimiter", "TokenBucket"]


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The answer for one call.

    Attributes:
        allowed: whether the call may go ahead.
        retry_after_ms: when refused, how long until one token is back.
    """

    allowed: bool
    retry_after_ms: int = 0


class TokenBucket:
    """One client's bucket.

    Args:
        rate_per_s: tokens added per second.
        burst: most tokens held; a new bucket starts full.
        now_s: the current time in seconds (monotonic).
    """

    def __init__(self, rate_per_s: float, burst: float, now_s: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(
                f"a bucket needs rate_per_s > 0 and burst >= 1, "
                f"got rate_per_s={rate_per_s} burst={burst}"
            )
        self._rate_per_s = rate_per_s
        self._burst = burst
        self._tokens = burst
        self._at_s = now_s

    def take(self, now_s: float) -> RateDecision:
        """Take one token if there is one."""
        elapsed_s = max(0.0, now_s - self._at_s)
        self._tokens = min(self._burst, self._tokens + elapsed_s * self._rate_per_s)
        self._at_s = now_s

        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return RateDecision(allowed=True)
        missing = 1.0 - self._tokens
        return RateDecision(
            allowed=False,
            retry_after_ms=max(1, math.ceil(missing / self._rate_per_s * 1000)),
        )


class RateLimiter:
    """Token buckets by client id, all with the same rate and burst.

    Buckets are kept for at most ``max_clients`` clients, least recently seen
    dropped first; a dropped client comes back with a full bucket, which
    only matters with more distinct clients than that.

    Args:
        rate_per_s: calls per second each client may sustain.
        burst: calls a client may make at once after being idle.
        max_clients: most buckets held.
        clock: monotonic seconds; ``time.monotonic`` unless a test injects one.
    """

    # TODO: buckets live in one gateway process; with N gateways behind a
    # load balancer a client gets N times its rate. A shared limit needs a
    # counter every gateway sees (the store is too slow for it per call).
    def __init__(
        self,
        rate_per_s: float,
        burst: float,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        TokenBucket(rate_per_s, burst, 0.0)  # validates the pair once, here
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.num_refused = 0
        self._max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, client: str) -> RateDecision:
        """Charge one call to ``client``."""
        now_s = self._clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = TokenBucket(self.rate_per_s, self.burst, now_s)
            self._buckets[client] = bucket
            if len(self._buckets) > self._max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)

        decision = bucket.take(now_s)
        if not decision.allowed:
            self.num_refused += 1
        return decision
