"""What a picture costs in memory before it is decoded (from its header), and the predictor's
budget of it, shared by every thread and caller that reads pictures through it (the service's
``--max-in-flight-mb``, the API's lists)."""
import os
from pathlib import Path

from solov2.data.transforms import padded_size, resized_hw

DECODE_BYTES_PER_PIXEL = 7       # OpenCV's peak while it decodes: 6 bytes a pixel, a lossless WebP 7 (measured)
JPEG2000_BYTES_PER_PIXEL = 11    # a JPEG 2000: 10.3 (measured)
JPEG2000 = (b'\x00\x00\x00\x0cjP  \r\n\x87\n', b'\xff\x4f\xff\x51')     # its file and its bare codestream
NETWORK_COPIES = 3               # float32 copies of the network's input held at once while it is made
DEFAULT_BUDGET = 2 ** 30         # the service's, unless an eighth of the memory is less (default_budget)


def network_input_bytes(width: int, height: int, short: int, max_size: int) -> int:
    """Bytes of the network's input [3, Hp, Wp] float32 of a ``width`` x ``height`` picture
    at the test size ``short`` / ``max_size`` (``preprocess``)."""
    (new_h, new_w), _ = resized_hw(height, width, short, max_size)
    return 3 * 4 * padded_size(new_h, 32) * padded_size(new_w, 32)


def decode_cost(data, width: int, height: int, short: int, max_size: int) -> int:
    """Bytes that decoding and preparing the encoded picture ``data`` of ``width`` x ``height``
    (from its header) holds at its peak: what OpenCV holds while it decodes, and the copies
    of the network's input while it is resized and normalised (the picture itself held)."""
    per_pixel = JPEG2000_BYTES_PER_PIXEL if bytes(data[:12]).startswith(JPEG2000) else DECODE_BYTES_PER_PIXEL
    return per_pixel * width * height + NETWORK_COPIES * network_input_bytes(width, height, short, max_size)


def pixels_within(budget: int, short: int, max_size: int) -> int:
    """The most pixels a picture may have for ``decode_cost`` to fit ``budget`` bytes at the test
    size ``short`` / ``max_size`` (its network input at the largest; at least 1)."""
    largest_input = network_input_bytes(max_size, short, short, max_size)
    return max(1, (budget - NETWORK_COPIES * largest_input) // DECODE_BYTES_PER_PIXEL)


def prepared_bytes(width: int, height: int, short: int, max_size: int) -> int:
    """Bytes a ``width`` x ``height`` picture holds once read and prepared: [H, W, 3] uint8
    and the network's input."""
    return 3 * width * height + network_input_bytes(width, height, short, max_size)


def default_budget() -> int:
    """The service's in-flight budget unless told: ``DEFAULT_BUDGET``, or an eighth of the memory this process
    may use when less: the machine's, or its container's limit (cgroup) when lower."""
    total = os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    for path in ('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'):
        try:
            limit = Path(path).read_text().strip()
        except OSError:
            continue
        total = min(total, int(limit)) if limit.isdigit() else total
    return min(DEFAULT_BUDGET, total // 8)


class MemoryBudget:
    """Bytes held at once by the requests in flight, across threads and callers (the predictor's one budget),
    kept by its request queue's thread alone (``batching.RequestQueue``: a caller never touches it): ``take`` a
    request's cost at its admission, ``give`` it back once its work ends. ``limit`` 0: no budget. A picture fits
    while the others leave room for it, or when none is held."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    def fits(self, cost: int) -> bool:
        """Whether ``cost`` bytes more fit now."""
        return not self.limit or not self.used or self.used + cost <= self.limit

    def take(self, cost: int) -> None:
        """Hold ``cost`` bytes (admitted: by room, or forced)."""
        self.used += cost

    def give(self, cost: int) -> None:
        """Give back ``cost`` bytes taken."""
        self.used -= cost
