"""Durations as progress and log lines show them."""


def clock(seconds: float) -> str:
    """A duration in seconds as HH:MM:SS, with days in front past a day (``2d 03:04:05``)."""
    days, rest = divmod(int(seconds), 86400)
    text = f'{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}'
    return f'{days}d {text}' if days else text
