"""Crafted pictures for the pixel-limit tests, made in microseconds without their pixels:
headers that claim any size, and decompression bombs of a few bytes that decode (OpenCV)
to any size; a large JPEG of a sample picture."""
import struct
import zlib

import cv2


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A PNG's signature, IHDR declaring ``width`` x ``height`` RGB, and an empty IDAT: what a
    header reader reads, but no pixels."""
    ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + png_chunk(b'IHDR', ihdr) + png_chunk(b'IDAT', b'')


def webp_bomb(width: int, height: int) -> bytes:
    """A lossless WebP (VP8L) of ``width`` x ``height`` black pixels (sides up to 16384) in
    36 bytes: no transform, no colour cache, and five prefix codes of one symbol each, so a
    pixel takes no bits."""
    fields = [(0x2F, 8), (width - 1, 14), (height - 1, 14), (0, 1), (0, 3), (0, 3)] + [(0b0001, 4)] * 5
    bits, shift = 0, 0
    for value, size in fields:          # least significant bit first
        bits, shift = bits | value << shift, shift + size
    data = bits.to_bytes(16, 'little')    # zeros after the codes: OpenCV wants 32 bytes or more of a WebP
    return b'RIFF' + struct.pack('<I', 4 + 8 + len(data)) + b'WEBP' + b'VP8L' + struct.pack('<I', len(data)) + data


def tiff_bomb(width: int, height: int, rows: int = 16) -> bytes:
    """An 8-bit grey TIFF of ``width`` x ``height`` zeros whose strips of ``rows`` rows all
    point at one deflated strip: a few KB for 144 MP."""
    strip = zlib.compress(bytes(width * rows), 9)
    count = -(-height // rows)
    ifd = 8 + len(strip)
    offsets, sizes = ifd + 2 + 9 * 12 + 4, ifd + 2 + 9 * 12 + 4 + 4 * count
    tags = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 8), (262, 3, 1, 1),
            (273, 4, count, offsets), (277, 3, 1, 1), (278, 4, 1, rows), (279, 4, count, sizes)]
    entries = b''.join(struct.pack('<HHII', *tag) for tag in tags)     # SHORT values sit in the low bytes (II)
    return (b'II*\0' + struct.pack('<I', ifd) + strip + struct.pack('<H', len(tags)) + entries + bytes(4)
            + struct.pack(f'<{count}I', *[8] * count) + struct.pack(f'<{count}I', *[len(strip)] * count))


def with_fill_bytes(jpeg: bytes, count: int = 7) -> bytes:
    """``jpeg`` with ``count`` 0xFF fill bytes before its SOF0 marker (JPEG allows any number)."""
    start = jpeg.index(b'\xff\xc0')
    return jpeg[:start] + b'\xff' * count + jpeg[start:]


def large_jpeg(path, factor: int, quality: int = 95) -> bytes:
    """The picture at ``path`` enlarged ``factor`` times (bicubic) as JPEG bytes: a large photo
    whose content the shipped model knows."""
    small = cv2.imread(str(path))
    height, width = small.shape[:2]
    large = cv2.resize(small, (width * factor, height * factor), interpolation=cv2.INTER_CUBIC)
    return cv2.imencode('.jpg', large, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
