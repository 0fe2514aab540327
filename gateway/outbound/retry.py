"""When to try a failed push again: exponential backoff with full jitter, then give up."""
from __future__ import annotations

import dataclasses
import random


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """When to try a failed send again: exponential backoff with full jitter, then give up.

    After the n-th failed attempt the next one waits a random time between 0 and
    min(cap, base × 2^(n-1)). With the defaults the ceilings are 30 s, 1, 2, 4, 8, 16, 32 min,
    1 h 4 min, 2 h 8 min, 4 h 16 min, then 6 h for the remaining attempts: 18 attempts in all,
    about a day on average (at most about two) before the job is dead.
    """

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
        """The ceilings of every wait, in order (for the README and the tests)."""
        return [self.ceiling(n) for n in range(1, self.max_attempts)]


DEFAULT_POLICY = RetryPolicy()
# 429 without Retry-After: the whole queue waits, growing with each 429 in a row.
THROTTLE_POLICY = RetryPolicy(base=5.0, cap=300.0, max_attempts=10**9)
