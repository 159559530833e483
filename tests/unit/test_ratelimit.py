"""Per-client token buckets, driven by an injected clock."""

from __future__ import annotations

import pytest

from engine.ratelimit import RateLimiter, TokenBucket


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_burst_is_allowed_then_refused_with_retry_hint() -> None:
    """A full bucket allows ``burst`` calls, then refuses with the refill wait."""
    clock = Clock()
    limiter = RateLimiter(rate_per_s=4.0, burst=3, clock=clock)

    allowed = [limiter.take("app").allowed for _ in range(3)]
    refused = limiter.take("app")

    assert [True, True, True] == allowed
    assert refused.allowed is False
    assert 250 == refused.retry_after_ms
    assert 1 == limiter.num_refused


def test_refill_after_the_hint_allows_again() -> None:
    """Waiting the retry hint gives exactly one more call."""
    clock = Clock()
    limiter = RateLimiter(rate_per_s=2.0, burst=1, clock=clock)
    limiter.take("app")
    hint = limiter.take("app").retry_after_ms

    clock.now_s += hint / 1000

    assert limiter.take("app").allowed is True
    assert limiter.take("app").allowed is False


def test_clients_have_separate_buckets() -> None:
    """One client's spending does not limit another."""
    clock = Clock()
    limiter = RateLimiter(rate_per_s=1.0, burst=1, clock=clock)
    limiter.take("a")

    assert limiter.take("a").allowed is False
    assert limiter.take("b").allowed is True


def test_bucket_never_holds_more_than_burst() -> None:
    """A long idle spell refills to ``burst``, not beyond."""
    bucket = TokenBucket(rate_per_s=10.0, burst=2, now_s=0.0)

    results = [bucket.take(3600.0).allowed for _ in range(3)]

    assert [True, True, False] == results


def test_least_recent_client_is_dropped_past_the_cap() -> None:
    """Past ``max_clients`` the oldest bucket goes; that client starts full."""
    clock = Clock()
    limiter = RateLimiter(rate_per_s=1.0, burst=1, max_clients=2, clock=clock)
    limiter.take("a")
    limiter.take("b")
    limiter.take("c")

    assert limiter.take("a").allowed is True
    assert limiter.take("c").allowed is False


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 5), (1.0, 0)])
def test_bad_rate_or_burst_is_refused(rate: float, burst: int) -> None:
    """A bucket that could never allow a call is a configuration error."""
    with pytest.raises(ValueError, match="rate_per_s"):
        RateLimiter(rate_per_s=rate, burst=burst)
