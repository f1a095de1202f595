"""GRPO's alarms: the pure comparison, checked on constructed histories."""

from __future__ import annotations

import math

import pytest

from hubkit.train.alarms import AlarmTripped, AlarmWatch, tripped
from hubkit.train.recipe import GRPOAlarms


def history(**series):
    return {k: list(v) for k, v in series.items()}


def test_length_drift_compares_the_last_window_with_the_first():
    cfg = GRPOAlarms(window=2, length_drift=1.5, min_parsed=None, min_distinct=None, reading_drop=None)
    assert tripped(cfg, history(length=[10, 10, 14, 14.9])) == []  # 14.45 ≤ 1.5 × 10
    found = tripped(cfg, history(length=[10, 12, 17, 18]))  # first 11, last 17.5 > 16.5
    assert len(found) == 1 and "17.5 tokens" in found[0] and "11.0 at the start" in found[0]
    assert tripped(cfg, history(length=[10, 40, 40])) == []  # windows would overlap: not judged yet


def test_parse_rate_and_diversity_are_absolute_thresholds_over_the_last_window():
    cfg = GRPOAlarms(window=3, length_drift=None, min_parsed=0.5, min_distinct=2.0, reading_drop=None)
    ok = history(succeeded=[0.1, 0.9, 0.6, 0.6], distinct_per_group=[1, 3, 3, 3])
    assert tripped(cfg, ok) == []  # last three: 0.7 and 3
    bad = history(succeeded=[1, 0.5, 0.4, 0.5], distinct_per_group=[4, 2, 1.5, 1.5])
    found = tripped(cfg, bad)
    assert any("parse rate: 0.47" in f for f in found) and any("diversity: 1.67" in f for f in found)


def test_reading_drop_ignores_steps_without_a_value():
    cfg = GRPOAlarms(window=2, length_drift=None, min_parsed=None, min_distinct=None, reading_drop=0.05)
    nan = math.nan
    assert tripped(cfg, history(frozen_real_minus_empty=[0.2, nan, 0.2, 0.17, 0.16])) == []  # drop 0.035
    found = tripped(cfg, history(frozen_real_minus_empty=[0.2, 0.2, nan, 0.1, 0.12]))
    assert len(found) == 1 and "+0.110" in found[0] and "+0.200" in found[0]


def test_watch_names_the_last_good_checkpoint_and_round_trips_its_history():
    cfg = GRPOAlarms(window=1, length_drift=None, min_parsed=0.9, min_distinct=None, reading_drop=None)
    watch = AlarmWatch(cfg)
    watch.add({"succeeded": 1.0, "length": 5.0})
    watch.check(1, "run/grpo/step_000001")
    watch.add({"succeeded": 0.2, "frozen_real_minus_empty": None})
    with pytest.raises(AlarmTripped, match=r"step 2: parse rate: 0.20 .*Last good checkpoint: run/av/x"):
        watch.check(2, "run/av/x")
    saved = watch.state()
    assert saved["frozen_real_minus_empty"] == [None, None] and saved["succeeded"] == [1.0, 0.2]
    again = AlarmWatch(cfg)
    again.restore(saved)
    assert again.history["succeeded"] == [1.0, 0.2] and math.isnan(again.history["length"][1])
