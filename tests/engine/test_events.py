"""Progress events are rate-limited at the source by step count, not by the clock."""

import time

from engine.core.events import Throttle


def reported_steps(throttle: Throttle, steps: int, seconds_per_step: float = 0.0) -> list[int]:
    reported = []
    for step in range(1, steps + 1):
        time.sleep(seconds_per_step)
        if throttle.ready(force=step == steps):
            reported.append(step)
    return reported


def test_a_loop_reports_the_same_steps_however_long_each_step_takes():
    assert reported_steps(Throttle(every=10), 25) == reported_steps(Throttle(every=10), 25, 0.03) == [1, 11, 21, 25]


def test_a_resumed_loop_reports_the_steps_the_uninterrupted_loop_reports():
    resumed = Throttle(every=10, done_steps=14)
    assert [step for step in range(15, 31) if resumed.ready()] == [21]


def test_a_throttle_with_an_interval_reports_at_most_once_per_interval():
    throttle = Throttle(interval=3600)
    assert [throttle.ready() for _ in range(3)] == [True, False, False]
