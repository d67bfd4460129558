"""``YYMMDDHH`` timestamps (Avazu's ``hour``) as two categorical fields: the
hour of day and the weekday. The raw value itself is not a feature: each hour
occurs once, so a model could only memorise it.
"""

import numpy as np
import pandas as pd

from data.schema import MISSING_KEY

HOUR_FORMAT = "%y%m%d%H"


def hour_fields(text: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hour of day and weekday keys of ``YYMMDDHH`` strings.

    Args:
        text: ``(n,)`` strings such as ``"14102100"`` (2014-10-21, 00 h); an
            empty string is missing.

    Returns:
        ``(hour_of_day, weekday, bad)``: ``(n,)`` int64 keys, 0..23 and 0..6
        (Monday is 0), ``MISSING_KEY`` where the value is empty or bad; and a
        ``(n,)`` mask of values that are not 8 digits naming a real hour.
    """
    values = pd.Series(np.asarray(text, dtype=object), dtype=object)
    empty = (values == "").to_numpy()
    digits = values.str.fullmatch(r"[0-9]{8}").fillna(False).to_numpy(dtype=bool)
    when = pd.to_datetime(values.where(digits), format=HOUR_FORMAT, errors="coerce")
    valid = digits & when.notna().to_numpy()

    hour_of_day = np.full(len(values), MISSING_KEY, dtype=np.int64)
    weekday = np.full(len(values), MISSING_KEY, dtype=np.int64)
    hour_of_day[valid] = when.dt.hour.to_numpy()[valid]
    weekday[valid] = when.dt.day_of_week.to_numpy()[valid]
    return hour_of_day, weekday, ~valid & ~empty
