"""Test doubles that are not backends: the clock (Liquid injects it everywhere)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass
class FakeClock:
    """A settable UTC clock; ``advance`` moves it forward."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 0.0, **delta: float) -> datetime:
        self.now += timedelta(seconds=seconds, **delta)
        return self.now
