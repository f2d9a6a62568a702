"""How many requests an HTTP backend keeps in flight, and when the next one may start.

``Concurrency`` adapts the number in flight the way TCP adapts its window: a server that says it is
overloaded (429, 503) halves it at once, and each full round of answers without complaint adds one back,
up to the slots the caller asked for. ``Pacing`` holds every request back while a server's Retry-After
runs, and spreads requests evenly under a hosted API's per-minute limits.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter


class Concurrency:
    """The number of requests allowed in flight, and a record of how it moved (for the run's notes)."""

    def __init__(self, slots: int) -> None:
        self.ceiling = self.limit = self.lowest = slots
        self.peak = 0  # most requests really in flight at once
        self.lowered: Counter[str] = Counter()  # why it was lowered: "HTTP 429" -> times
        self.epoch = 0  # bumped at each cut: answers to requests sent before it do not cut again
        self._answered = 0

    def allow(self, slots: int) -> None:
        """The caller's slots for this stream: the ceiling; the limit too unless a server lowered it."""
        self.ceiling = slots
        self.limit = min(self.limit, slots) if self.lowered else slots

    def lower(self, epoch: int, reason: str) -> None:
        """A server refused a request sent in ``epoch`` because it is overloaded: halve the limit, once
        for all the requests that were already in flight when it happened."""
        if epoch != self.epoch:
            return
        self.epoch += 1
        self.limit = max(1, self.limit // 2)
        self.lowest = min(self.lowest, self.limit)
        self.lowered[reason] += 1
        self._answered = 0

    def answered(self) -> None:
        """A request succeeded: after ``limit`` of them in a row, allow one more."""
        if self.limit < self.ceiling:
            self._answered += 1
            if self._answered >= self.limit:
                self.limit += 1
                self._answered = 0

    def summary(self) -> str:
        """One line for the run's notes: how many were in flight, and whether and why that was lowered."""
        line = f"requests in flight: up to {self.peak} (--batch-size {self.ceiling})"
        if self.lowered:
            times = sum(self.lowered.values())
            why = ", ".join(reason if n == 1 else f"{reason} x{n}" for reason, n in sorted(self.lowered.items()))
            line += (f"; lowered {'once' if times == 1 else f'{times} times'} ({why}), down to {self.lowest}, "
                     f"{self.limit} at the end")
        return line


class Pacing:
    """When the next request may start. All state lives on one event loop, so no lock is needed."""

    def __init__(self, requests_per_minute: int | None = None, tokens_per_minute: int | None = None) -> None:
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self._resume_at = 0.0  # time.monotonic() before which nothing starts (a server's Retry-After)
        self._next_request = 0.0  # the next free start under the per-minute limits
        self._next_tokens = 0.0

    def pause(self, seconds: float) -> None:
        """The server asked every client to wait this long."""
        self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    async def wait(self, tokens: int) -> None:
        """Sleep until a request of about ``tokens`` tokens (prompt and completion) may start, and book
        its share of the per-minute limits."""
        while (delay := self._resume_at - time.monotonic()) > 0:
            await asyncio.sleep(delay)  # again: another 429 may have pushed the pause further meanwhile
        now = time.monotonic()
        start = max(now, self._next_request, self._next_tokens)
        if self.requests_per_minute:
            self._next_request = start + 60 / self.requests_per_minute
        if self.tokens_per_minute:
            self._next_tokens = start + tokens * 60 / self.tokens_per_minute
        if start > now:
            await asyncio.sleep(start - now)
