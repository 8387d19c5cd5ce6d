import logging
import math

import pytest

from reranker.training.health import CollapseMonitor, TrainingDiverged, check_finite


def test_non_finite_loss_stops():
    check_finite(0.5, step=3)
    for bad in (math.nan, math.inf):
        with pytest.raises(TrainingDiverged, match="at step 7"):
            check_finite(bad, step=7)


def test_collapse_warns_once_at_chance(caplog):
    monitor = CollapseMonitor(group_size=8, window=5)
    with caplog.at_level(logging.WARNING):
        fired = [monitor.update(step, math.log(8) + 0.01) for step in range(1, 11)]
    assert fired == [False] * 4 + [True] + [False] * 5
    assert "ln(8) = 2.079" in caplog.text


def test_window_counts_steps_not_log_lines():
    # Logging every 10 steps: one log line at chance already covers a window of 5 steps.
    assert CollapseMonitor(group_size=4, window=5).update(10, math.log(4))
    # A log below chance resets the count.
    monitor = CollapseMonitor(group_size=4, window=20)
    assert not monitor.update(10, math.log(4)) and not monitor.update(20, 0.5) and not monitor.update(30, math.log(4))
    assert monitor.update(40, math.log(4))


def test_no_warning_while_learning_or_disabled():
    learning = CollapseMonitor(group_size=8, window=5)
    assert not any(learning.update(step, 2.08 - 0.1 * step) for step in range(1, 21))
    assert not CollapseMonitor(group_size=8, window=0).update(10, math.log(8))
    # The same step logged again covers no new steps.
    monitor = CollapseMonitor(group_size=4, window=3)
    assert not any(monitor.update(1, math.log(4)) for _ in range(10))
