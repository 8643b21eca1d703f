"""When a failed delivery is tried again, and when it is given up."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Exponential backoff: ``base_s`` after the first failure, doubling up to ``max_s``.

    A message is tried until an attempt fails ``window_s`` or more after the event, so
    the schedule spans at least ``window_s`` (24 hours by default: about 20 attempts,
    5 s, 10 s, 20 s … then every 3 hours). Tests compress it through the settings.
    """

    base_s: float = 5.0
    max_s: float = 10800.0
    window_s: float = 86400.0

    def delay_s(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1 = the first)."""
        return float(min(self.max_s, self.base_s * 2.0 ** min(max(attempt - 1, 0), 62)))

    def next_attempt_at(self, *, attempt: int, created_at: float, now: float) -> float | None:
        """When to try again after ``attempt`` failed at ``now``; None: give up."""
        if now - created_at >= self.window_s:
            return None
        return now + self.delay_s(attempt)

    def attempts_within_window(self) -> int:
        """How many attempts a message that always fails gets (for the docs and tests)."""
        elapsed, attempt = 0.0, 1
        while elapsed < self.window_s:
            elapsed += self.delay_s(attempt)
            attempt += 1
        return attempt
