"""The progress line of `tamiyo train` (cli/train_progress.py): time elapsed and left, frames/s, for every budget."""

from __future__ import annotations

from tamiyo.cli.train_progress import Budget, clock, progress_text


def test_clock():
    assert [clock(s) for s in (0, 9.9, 83, 600, 3725, -1)] == ["0:00", "0:09", "1:23", "10:00", "1:02:05", "0:00"]


def test_an_updates_budget_estimates_the_time_left_from_the_pace():
    b = Budget(updates=100)
    text = progress_text(b, updates=25, frames=80_000, elapsed_s=60, recent_return=0.6142)
    assert text == "updates 25/100, 1:00 elapsed, ~3:00 left, 1,333 frames/s, 80,000 frames, return 0.614"
    assert (b.unit, b.total, b.done(25, 80_000, 60)) == ("updates", 100, 25)
    assert b.done(130, 0, 60) == 100  # the bar stops at its total
    assert (
        progress_text(b, updates=0, frames=0, elapsed_s=0)
        == "updates 0/100, 0:00 elapsed, ? left, 0 frames/s, 0 frames"
    )


def test_a_frames_budget_shows_the_frames_and_the_updates():
    b = Budget(frames=1_500_000)
    text = progress_text(b, updates=34, frames=500_000, elapsed_s=150)
    assert text == "frames 500,000/1,500,000, 2:30 elapsed, ~5:00 left, 3,333 frames/s, 34 updates"
    assert b.done(34, 500_000, 150) == 500_000


def test_a_minutes_budget_shows_elapsed_and_left_of_the_whole_not_seconds_per_second():
    b = Budget(seconds=180)
    text = progress_text(b, updates=34, frames=266_480, elapsed_s=83.4, recent_return=-0.5)
    assert text == "1:23 elapsed, 1:36 left of 3:00, 3,195 frames/s, 34 updates, 266,480 frames, return -0.500"
    assert (b.unit, b.total, b.done(0, 0, 83.4)) == ("seconds", 180, 83)


def test_with_several_budgets_the_first_reached_sets_the_time_left():
    b = Budget(updates=100, seconds=600)  # the pace says 3:00 more, the clock 9:00
    assert "~3:00 left" in progress_text(b, updates=25, frames=1, elapsed_s=60)
    b = Budget(updates=100, seconds=120)  # the clock: exact
    assert ", 1:00 left, " in progress_text(b, updates=25, frames=1, elapsed_s=60)
