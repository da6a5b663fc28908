from solov2.core.durations import clock


def test_clock_shows_hours_minutes_seconds():
    assert clock(0) == '00:00:00'
    assert clock(3 * 3600 + 4 * 60 + 5.7) == '03:04:05'


def test_clock_shows_days_past_24_hours():
    """A training ETA of several days: days in front, never wrapped to the hour of the day."""
    assert clock(24 * 3600) == '1d 00:00:00'
    assert clock(2 * 86400 + 3 * 3600 + 4 * 60 + 5) == '2d 03:04:05'
