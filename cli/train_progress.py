"""The progress line of `tamiyo train`: the budget done, the time elapsed and left, frames/s.

    updates 34/100, 1:23 elapsed, ~2:41 left, 3,210 frames/s, 266,480 frames, return 0.614
    frames 266,480/1,500,000, 1:23 elapsed, ~6:25 left, 3,210 frames/s, 34 updates
    1:23 elapsed, 1:37 left of 3:00, 3,210 frames/s, 34 updates, 266,480 frames

The time left of a minutes budget is exact; of an updates or frames budget it is estimated from the
pace so far (``~``), and with several budgets the first one reached decides.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Budget", "clock", "progress_text"]


def clock(seconds: float) -> str:
    """``83`` -> ``1:23``; ``3725`` -> ``1:02:05``."""
    s = max(0, int(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


@dataclass(frozen=True)
class Budget:
    """What ends the run (the first reached): learner updates, env frames, wall-clock seconds."""

    updates: int | None = None
    frames: int | None = None
    seconds: float | None = None

    @property
    def unit(self) -> str:
        """The budget the bar shows: updates, else frames, else the clock."""
        return "updates" if self.updates else ("frames" if self.frames else "seconds")

    @property
    def total(self) -> int:
        return int(self.updates or self.frames or self.seconds or 0)

    def done(self, updates: int, frames: int, elapsed_s: float) -> int:
        """How far the bar's budget is, in its own unit (at most its total)."""
        done = {"updates": updates, "frames": frames, "seconds": int(elapsed_s)}[self.unit]
        return min(done, self.total)

    def remaining_s(self, updates: int, frames: int, elapsed_s: float) -> float | None:
        """Seconds until the first budget is reached; None while there is no pace to estimate from."""
        left = [max(0.0, self.seconds - elapsed_s)] if self.seconds else []
        for total, done in ((self.updates, updates), (self.frames, frames)):
            if total and done > 0:
                left.append(max(0.0, elapsed_s * (total - done) / done))
        return min(left) if left else None


def progress_text(
    budget: Budget,
    *,
    updates: int,
    frames: int,
    elapsed_s: float,
    recent_return: float | None = None,
) -> str:
    """The line beside the bar (see the module docstring)."""
    parts: list[str] = []
    if budget.unit == "updates":
        parts.append(f"updates {updates:,}/{budget.updates:,}")
    elif budget.unit == "frames":
        parts.append(f"frames {frames:,}/{budget.frames:,}")
    parts.append(f"{clock(elapsed_s)} elapsed")
    left = budget.remaining_s(updates, frames, elapsed_s)
    exact = budget.seconds is not None and left == max(0.0, budget.seconds - elapsed_s)
    if left is None:
        parts.append("? left")
    elif exact and budget.unit == "seconds":
        parts.append(f"{clock(left)} left of {clock(budget.total)}")
    else:
        parts.append(f"{'' if exact else '~'}{clock(left)} left")
    parts.append(f"{frames / elapsed_s if elapsed_s > 0 else 0.0:,.0f} frames/s")
    if budget.unit != "updates":
        parts.append(f"{updates:,} updates")
    if budget.unit != "frames":
        parts.append(f"{frames:,} frames")
    if recent_return is not None:
        parts.append(f"return {recent_return:.3f}")
    return ", ".join(parts)
