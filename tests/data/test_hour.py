import datetime

import numpy as np

from data.hour import hour_fields
from data.schema import MISSING_KEY


def test_hour_of_day_and_weekday_match_the_standard_library():
    rng = np.random.default_rng(0)
    start = datetime.datetime(2014, 10, 21)
    moments = [
        start + datetime.timedelta(hours=int(h)) for h in rng.integers(0, 9000, 50)
    ]
    text = np.array([m.strftime("%y%m%d%H") for m in moments])
    hour_of_day, weekday, bad = hour_fields(text)
    np.testing.assert_array_equal(hour_of_day, [m.hour for m in moments])
    np.testing.assert_array_equal(weekday, [m.weekday() for m in moments])
    assert not bad.any()


def test_avazu_first_hour_is_a_tuesday_midnight():
    hour_of_day, weekday, _ = hour_fields(np.array(["14102100", "14102523"]))
    assert hour_of_day.tolist() == [0, 23] and weekday.tolist() == [1, 5]


def test_empty_is_missing_and_impossible_hours_are_bad():
    text = np.array(["", "14102124", "14022900", "1410210", "1410210x", "141021000"])
    hour_of_day, weekday, bad = hour_fields(text)
    assert bad.tolist() == [False, True, True, True, True, True]
    assert (hour_of_day == MISSING_KEY).all() and (weekday == MISSING_KEY).all()
