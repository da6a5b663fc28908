"""Durations as progress and log lines show them."""
import time


def clock(seconds: float) -> str:
    """A duration in seconds as HH:MM:SS."""
    return time.strftime('%H:%M:%S', time.gmtime(seconds))
