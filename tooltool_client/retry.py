"""How often, and after how long, a failed download is tried again."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` rounds over the server list, sleeping between rounds: `base` seconds,
    doubling up to `ceiling`, each with up to a quarter of jitter (so the machines of
    a CI fleet don't retry in step)."""

    attempts: int = 4
    base: float = 1.0
    ceiling: float = 30.0

    def delay(self, round_number: int) -> float:
        plain = min(self.ceiling, self.base * 2**round_number)
        return plain * (1 + random.uniform(-0.25, 0.25))  # noqa: S311 - jitter, not secrets
