"""When to try a failed push again: exponential backoff with full jitter, then give up."""
from __future__ import annotations

import dataclasses
import random


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """After the n-th failed attempt, wait a random time up to min(cap, base × 2^(n-1)); give up after
    `max_attempts` (the defaults: docs/outbound.md, "Retries")."""

    base: float = 30.0
    cap: float = 6 * 3600.0
    max_attempts: int = 18

    def ceiling(self, attempts: int) -> float:
        return min(self.cap, self.base * 2 ** max(0, attempts - 1))

    def next_delay(self, attempts: int, rng=random) -> float | None:
        """Seconds to wait after `attempts` failed attempts, or None: give up (dead)."""
        if attempts >= self.max_attempts:
            return None
        return rng.uniform(0, self.ceiling(attempts))

    def schedule(self) -> list[float]:
        """The ceilings of every wait, in order (docs/outbound.md, "Retries"; the tests)."""
        return [self.ceiling(n) for n in range(1, self.max_attempts)]


DEFAULT_POLICY = RetryPolicy()
# 429 without Retry-After: the whole queue waits, growing with each 429 in a row.
THROTTLE_POLICY = RetryPolicy(base=5.0, cap=300.0, max_attempts=10**9)
