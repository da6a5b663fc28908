"""Tests for data.transforms."""

import io
import logging
import warnings
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from PIL import Image

from solov2.core.errors import InputError, LimitError
from solov2.data import transforms
from solov2.data.transforms import (
    ImageMeta,
    ReducedImage,
    batch_images,
    bucket_for,
    bucket_sizes,
    decode_image,
    header_size,
    jpeg_reduction,
    normalize,
    pad_to_multiple,
    padded_size,
    pil_to_array,
    preprocess,
    read_image,
    resized_hw,
    swap_red_blue,
    to_rgb,
)
from tests.pictures import png_header, tiff_bomb, webp_bomb, with_fill_bytes


@pytest.mark.parametrize(
    ('hw', 'expected_hw'),
    [
        ((480, 640), (800, 1067)),  # scale 800/480, width 1066.67 -> 1067
        ((1000, 100), (1333, 133)),  # long side limited: scale 1.333
        ((800, 1333), (800, 1333)),  # already at target
        ((100, 100), (800, 800)),
        ((600, 2000), (400, 1333)),  # 1333/2000 = 0.6665 -> h 399.9 -> 400
    ],
)
def test_resized_hw(hw, expected_hw):
    assert resized_hw(*hw, 800, 1333)[0] == expected_hw


def test_normalize_hand_built_pixel():
    image = np.zeros((1, 2, 3), dtype=np.uint8)
    image[0, 1] = (255, 0, 128)
    chw = normalize(image)
    assert chw.shape == (3, 1, 2) and chw.dtype == np.float32
    expected = [(255 - 123.675) / 58.395, (0 - 116.28) / 57.12, (128 - 103.53) / 57.375]
    np.testing.assert_allclose(chw[:, 0, 1], expected, rtol=1e-6)
    np.testing.assert_allclose(chw[:, 0, 0], [-123.675 / 58.395, -116.28 / 57.12, -103.53 / 57.375], rtol=1e-6)


def test_pad_to_multiple_shape_and_zeros():
    chw = np.ones((3, 33, 64), dtype=np.float32)
    padded = pad_to_multiple(chw, 32)
    assert padded.shape == (3, 64, 64)
    assert np.all(padded[:, :33, :64] == 1)
    assert np.all(padded[:, 33:, :] == 0)


def test_pad_to_multiple_keeps_exact_multiple():
    chw = np.ones((3, 64, 32), dtype=np.float32)
    assert pad_to_multiple(chw).shape == (3, 64, 32)


def test_preprocess_meta():
    image = np.full((480, 640, 3), 200, dtype=np.uint8)
    chw, meta = preprocess(image, 800, 1333)
    assert meta == ImageMeta(orig_hw=(480, 640), resized_hw=(800, 1067), padded_hw=(800, 1088))
    assert chw.shape == (3, 800, 1088) and chw.dtype == np.float32
    assert np.all(chw[:, :, 1067:] == 0)


def test_batch_images_pads_to_largest():
    a = np.ones((3, 32, 64), dtype=np.float32)
    b = np.full((3, 64, 32), 2, dtype=np.float32)
    batch = batch_images([a, b])
    assert batch.shape == (2, 3, 64, 64)
    assert np.all(batch[0, :, :32, :] == 1) and np.all(batch[0, :, 32:, :] == 0)
    assert np.all(batch[1, :, :, :32] == 2) and np.all(batch[1, :, :, 32:] == 0)


def test_read_image_rgb_and_non_ascii_path(tmp_path):
    bgr = np.zeros((5, 6, 3), dtype=np.uint8)
    bgr[..., 2] = 255  # red in BGR
    path = tmp_path / 'bild_ä_图.png'
    ok, encoded = cv2.imencode('.png', bgr)
    assert ok
    encoded.tofile(path)
    image = read_image(path)
    assert image.shape == (5, 6, 3) and image.dtype == np.uint8
    assert np.all(image[..., 0] == 255) and np.all(image[..., 1:] == 0)


@pytest.mark.parametrize('content', [b'', b'not an image at all'])
def test_read_image_unreadable(tmp_path, content):
    path = tmp_path / 'broken.jpg'
    path.write_bytes(content)
    with pytest.raises(ValueError, match='cannot read image'):
        read_image(path)


def test_read_image_missing(tmp_path):
    with pytest.raises(ValueError, match='cannot read image'):
        read_image(tmp_path / 'missing.jpg')


@pytest.mark.parametrize('kind', ['JPEG', 'PNG', 'BMP', 'WEBP', 'TIFF', 'GIF', 'JPEG2000', 'PPM'])
def test_header_size_reads_width_and_height_without_decoding(kind):
    encoded = io.BytesIO()
    Image.new('RGB', (53, 37), (40, 120, 200)).save(encoded, kind)
    data = encoded.getvalue()
    assert header_size(data) == header_size(memoryview(data)) == header_size(np.frombuffer(data, np.uint8)) == (53, 37)
    assert decode_image(data).shape == (37, 53, 3)      # a picture OpenCV decodes
    assert header_size(data[:5]) is None


def test_a_webps_size_is_read_from_its_chunk_without_pillows_decoder(monkeypatch):
    """Lossy (VP8), lossless (VP8L) and extended (VP8X) WebPs, and a 256 MP bomb that Pillow's
    reader refuses: their sizes, without Pillow's decoder, which allocates the whole canvas."""
    from PIL import WebPImagePlugin
    pictures = []
    for mode, options in (('RGB', {}), ('RGB', {'lossless': True}), ('RGBA', {'exif': b'Exif\0\0'})):
        encoded = io.BytesIO()
        Image.new(mode, (53, 37)).save(encoded, 'WEBP', **options)
        pictures.append(encoded.getvalue())
    assert [data[12:16] for data in pictures] == [b'VP8 ', b'VP8L', b'VP8X']
    monkeypatch.setattr(WebPImagePlugin.WebPImageFile, '_open', lambda self: pytest.fail('decoder made'))
    assert [header_size(data) for data in pictures] == [(53, 37)] * 3
    assert header_size(webp_bomb(16000, 16000)) == (16000, 16000)
    assert header_size(pictures[0][:29]) is None


def test_a_reader_that_fails_in_any_way_gives_no_size(monkeypatch):
    """A damaged header may fail Pillow's reader with any exception (AVIF's: RuntimeError):
    no size, so an InputError (a service's 400), never another kind."""
    def broken(file, filename=None):
        raise RuntimeError('Failed to decode image: Missing or empty image item')
    data = png_header(5, 5)
    Image.init()
    monkeypatch.setitem(Image.OPEN, 'PNG', (broken, Image.OPEN['PNG'][1]))
    assert header_size(data) is None
    with pytest.raises(InputError, match='whose header gives its size'):
        decode_image(data)


def test_jpeg_size_found_after_a_large_app_segment_and_fill_bytes(monkeypatch):
    """0xFF fill bytes before a marker, which JPEG allows, do not hide the size."""
    ok, encoded = cv2.imencode('.jpg', np.zeros((20, 30, 3), np.uint8))
    data = encoded.tobytes()
    app = b'\xff\xe1' + (65535).to_bytes(2, 'big') + bytes(65533)
    assert header_size(data[:2] + app + data[2:]) == (30, 20)
    filled = with_fill_bytes(data)
    assert decode_image(filled, max_pixels=600).shape == (20, 30, 3)
    monkeypatch.setattr(transforms.cv2, 'imdecode', lambda *args: pytest.fail('decoded'))
    with pytest.raises(LimitError, match='is 30x20 = 0 MP, over the limit of 0.000599 MP'):
        decode_image(filled, max_pixels=599)


def test_a_huge_image_is_refused_from_its_header(tmp_path):
    """A PNG that claims 30000 x 20000 pixels is refused before anything is decoded."""
    (tmp_path / 'huge.png').write_bytes(png_header(30000, 20000))
    with pytest.raises(LimitError, match=r'30000x20000 = 600 MP, over the limit of 100 MP'):
        read_image(tmp_path / 'huge.png')
    assert cv2.imwrite(str(tmp_path / 'ok.png'), np.zeros((2, 2, 3), np.uint8))
    assert read_image(tmp_path / 'ok.png', max_pixels=4).shape == (2, 2, 3)
    assert read_image(tmp_path / 'ok.png', max_pixels=0).shape == (2, 2, 3)      # 0: no limit
    with pytest.raises(ValueError, match='over the limit'):
        read_image(tmp_path / 'ok.png', max_pixels=3)


def test_decode_image_reads_bytes_as_the_file_and_refuses_a_huge_header_before_decoding(tmp_path, monkeypatch):
    """The bytes of a picture decode to what its file reads to; a header that claims 600 MP
    is refused without calling the decoder; bytes that are not a picture are one InputError."""
    rgb = np.random.default_rng(0).integers(0, 255, (7, 9, 3), dtype=np.uint8)
    path = _png(tmp_path / 'a.png', rgb)
    data = path.read_bytes()
    for form in (data, bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
        np.testing.assert_array_equal(decode_image(form), read_image(path))
    monkeypatch.setattr(transforms.cv2, 'imdecode', lambda *args: pytest.fail('decoded'))
    with pytest.raises(ValueError, match=r'the picture in the bytes given is 30000x20000 = 600 MP, over the limit'):
        decode_image(png_header(30000, 20000))
    with pytest.raises(InputError, match='cannot read the upload: not a JPEG, PNG, .* whose header gives its size'):
        decode_image(b'GIF89a not really', what='the upload')
    monkeypatch.undo()
    with pytest.raises(InputError, match='cannot read the upload: not a picture OpenCV decodes'):
        decode_image(b'GIF89a not really', max_pixels=0, what='the upload')


@pytest.mark.parametrize('bomb', [webp_bomb, tiff_bomb])
def test_bombs_of_a_few_bytes_are_refused_from_their_headers_without_decoding(bomb, tmp_path, monkeypatch):
    """A WebP of 36 bytes and a TIFF of 6 KB that decode to 144 MP (432 MB, and 1 GB held
    while decoding) are refused as the limit says, the decoder never called; small ones of
    the same kind are decoded."""
    assert decode_image(bomb(120, 100)).shape == (100, 120, 3)
    (tmp_path / 'bomb').write_bytes(bomb(12000, 12000))
    monkeypatch.setattr(transforms.cv2, 'imdecode', lambda *args: pytest.fail('decoded'))
    with pytest.raises(LimitError, match='the picture in the bytes given is 12000x12000 = 144 MP, over the limit of '
                                         '100 MP — shrink it or raise max_image_pixels'):
        decode_image(bomb(12000, 12000))
    with pytest.raises(LimitError, match='bomb is 12000x12000 = 144 MP'):
        read_image(tmp_path / 'bomb', max_pixels=50_000_000)


def test_a_picture_whose_header_gives_no_size_is_refused_under_a_limit_and_decoded_without(monkeypatch):
    """Radiance HDR, which OpenCV decodes and Pillow does not read: one InputError naming the
    way out, nothing decoded; with no limit (0) it is decoded."""
    hdr = cv2.imencode('.hdr', np.ones((37, 53, 3), np.float32))[1].tobytes()
    assert decode_image(hdr, max_pixels=0).shape == (37, 53, 3)
    monkeypatch.setattr(transforms.cv2, 'imdecode', lambda *args: pytest.fail('decoded'))
    with pytest.raises(InputError, match=r'cannot read the picture in the bytes given: not a JPEG, PNG, .* whose '
                                         r'header gives its size; with no pixel limit \(overrides='):
        decode_image(hdr)


def test_header_size_is_silent_and_free_of_pillows_own_limit(monkeypatch):
    """Sizes over Pillow's MAX_IMAGE_PIXELS (a warning from Image.open) and twice it (an
    error) are read exactly, without a warning, whatever that limit is, and from many
    threads at once; the process's settings are left as they were."""
    filters, limit = list(warnings.filters), Image.MAX_IMAGE_PIXELS
    pictures = {png_header(20000, 20000): (20000, 20000), tiff_bomb(16000, 12000): (16000, 12000),
                with_fill_bytes(cv2.imencode('.jpg', np.zeros((20, 30, 3), np.uint8))[1].tobytes()): (30, 20)}
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert [header_size(data) for data in pictures] == list(pictures.values())
        monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 10)
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(header_size, list(pictures) * 50)) == list(pictures.values()) * 50
    monkeypatch.undo()
    assert (warnings.filters, Image.MAX_IMAGE_PIXELS) == (filters, limit)


def _png(path, array):
    assert cv2.imwrite(str(path), array)
    return path


def test_transparent_and_greyscale_pictures_are_said_once(tmp_path, caplog, monkeypatch):
    """RGBA with transparent pixels and greyscale pictures are read as before (RGB) with a
    warning naming the file; opaque RGBA and colour pictures pass silently."""
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    rgba = np.dstack([colour, np.full((24, 32), 255, np.uint8)])
    see_through = rgba.copy()
    see_through[:5, :5, 3] = 0
    grey = np.repeat(colour[..., :1], 3, axis=2)
    monkeypatch.setattr(transforms, '_said', set())
    with caplog.at_level(logging.WARNING, logger='solov2.data.transforms'):
        for name, array in (('colour.png', colour), ('opaque.png', rgba)):
            np.testing.assert_array_equal(read_image(_png(tmp_path / name, array), warn_colour=True), colour[..., ::-1])
        assert not caplog.records
        clear = read_image(_png(tmp_path / 'clear.png', see_through), warn_colour=True)
        np.testing.assert_array_equal(clear, colour[..., ::-1])
        read_image(_png(tmp_path / 'grey.png', grey), warn_colour=True)
        read_image(tmp_path / 'grey.png')     # training and evaluation read silently
        read_image(_png(tmp_path / 'grey2.png', grey), warn_colour=True)     # a folder of them: one line
        read_image(_png(tmp_path / 'clear2.png', see_through), warn_colour=True)
    messages = [r.message for r in caplog.records]
    assert len(messages) == 2
    assert 'clear.png has transparent pixels' in messages[0]
    assert 'grey.png is greyscale' in messages[1]


def test_arrays_are_converted_as_files_are(tmp_path):
    """Grey ([H, W] and [H, W, 1]), BGRA and RGBA, and 16-bit arrays give what read_image gives
    for the same pixels saved as a PNG: grey repeated, alpha dropped, 16 bits shifted to 8."""
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (10, 12), dtype=np.uint8)
    grey16 = rng.integers(0, 65536, (10, 12), dtype=np.uint16)
    bgra = rng.integers(0, 256, (10, 12, 4), dtype=np.uint8)
    bgr16 = rng.integers(0, 65536, (10, 12, 3), dtype=np.uint16)
    for name, array in (('grey', grey), ('grey16', grey16), ('bgra', bgra), ('bgr16', bgr16)):
        from_file = read_image(_png(tmp_path / f'{name}.png', array))
        np.testing.assert_array_equal(to_rgb(array, 'bgr'), from_file, err_msg=name)
    np.testing.assert_array_equal(to_rgb(grey[..., None]), to_rgb(grey))
    np.testing.assert_array_equal(to_rgb(bgra[..., [2, 1, 0, 3]], 'rgb'), to_rgb(bgra, 'bgr'))
    np.testing.assert_array_equal(to_rgb(grey16.astype('>u2'), 'rgb'), to_rgb(grey16, 'rgb'))   # big-endian
    np.testing.assert_array_equal(to_rgb(bgra[..., :3], 'bgr'), bgra[..., 2::-1])
    rgb = bgra[..., :3].copy()
    assert to_rgb(rgb, 'rgb') is rgb                # RGB uint8 is not copied
    assert to_rgb(grey).shape == (10, 12, 3) and to_rgb(grey).dtype == np.uint8


@pytest.mark.parametrize('array', [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 2), np.uint8),
                                   np.zeros((2, 4, 4, 3), np.uint8), np.zeros((0, 4, 3), np.uint8),
                                   np.array(['a.jpg', 'b.jpg']), np.zeros((4, 4, 3), np.int32)])
def test_other_arrays_are_one_input_error(array):
    with pytest.raises(ValueError, match=r'an image array must be \[H, W\] grey'):
        to_rgb(array)


def test_pil_images_are_read_as_their_files_are(tmp_path):
    """A PIL image of each common mode gives what read_image gives for the file it came
    from (palette expanded, grey repeated, alpha dropped, 16 bits shifted to 8)."""
    image_module = pytest.importorskip('PIL.Image')
    rng = np.random.default_rng(2)
    colour = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    made = {'RGB': image_module.fromarray(colour), 'L': image_module.fromarray(colour[..., 0]),
            'RGBA': image_module.fromarray(np.dstack([colour, colour[..., 1]])),
            'LA': image_module.fromarray(np.dstack([colour[..., 0], colour[..., 1]])),
            'I;16': image_module.fromarray(rng.integers(0, 65536, (10, 12), dtype=np.uint16)),
            '1': image_module.fromarray(colour[..., 0] > 128)}
    made['P'] = made['RGB'].quantize(16)
    for mode, image in made.items():
        assert image.mode == mode
        image.save(tmp_path / f'{mode}.png')
        reopened = image_module.open(tmp_path / f'{mode}.png')
        np.testing.assert_array_equal(to_rgb(pil_to_array(reopened), 'rgb'), read_image(tmp_path / f'{mode}.png'),
                                      err_msg=f'{mode} (opened as {reopened.mode})')
    as_int32 = made['I;16'].convert('I')
    np.testing.assert_array_equal(to_rgb(pil_to_array(as_int32), 'rgb'), to_rgb(pil_to_array(made['I;16']), 'rgb'))
    with pytest.raises(ValueError, match='mode F'):
        pil_to_array(as_int32.convert('F'))


def test_unusual_arrays_are_said_once_as_files_are(caplog, monkeypatch):
    """warn=True logs a transparent or a greyscale array once each, naming the source."""
    rng = np.random.default_rng(3)
    colour = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    opaque = np.dstack([colour, np.full((16, 16), 255, np.uint8)])
    see_through = opaque.copy()
    see_through[0, 0, 3] = 0
    monkeypatch.setattr(transforms, '_said', set())
    with caplog.at_level(logging.WARNING, logger='solov2.data.transforms'):
        to_rgb(colour, warn=True)
        to_rgb(opaque, warn=True)
        to_rgb(colour[..., 0], warn=False)
        assert not caplog.records
        to_rgb(see_through, source='frame 7', warn=True)
        to_rgb(colour[..., 0], source='a PIL image', warn=True)
        to_rgb(see_through, warn=True)
    assert [r.message.split(':')[0] for r in caplog.records] == ['frame 7 has transparent pixels',
                                                                 'a PIL image is greyscale']


def test_every_picture_fits_a_bucket():
    """Any picture, after the keep-ratio resize and the pad to 32, fits one of the few
    bucket sizes; the one chosen is the smallest that holds it."""
    sizes = bucket_sizes(448, 768)
    assert sizes == [(448, 448), (448, 608), (608, 448), (448, 768), (768, 448)]
    rng = np.random.RandomState(0)
    for height, width in rng.randint(16, 4000, (300, 2)):
        (h, w), _ = resized_hw(height, width, 448, 768)
        bucket = bucket_for(padded_size(h, 32), padded_size(w, 32), sizes)
        assert bucket is not None and bucket[0] >= h and bucket[1] >= w
        assert all(s[0] * s[1] >= bucket[0] * bucket[1] for s in sizes if s[0] >= h and s[1] >= w)
    assert bucket_for(480, 320, bucket_sizes(320, 640)) == (576, 320)
    assert bucket_for(800, 800, sizes) is None


def test_swap_red_blue_in_place_in_bands():
    image = np.random.default_rng(0).integers(0, 256, (75, 9, 3), dtype=np.uint8)   # not a whole number of bands
    expected = image[..., ::-1].copy()
    assert swap_red_blue(image) is image
    np.testing.assert_array_equal(image, expected)


@pytest.mark.parametrize('factor', [2, 4, 8])
def test_jpeg_reduction_is_the_largest_that_keeps_the_network_input_on_both_axes(factor):
    """At 300 / 1000 a picture k times the network input on both axes decodes at 1/k, one whose
    short side (or, with the long side the limit, long side) is a pixel short of it at 1/(k/2);
    never more than 1/8, and 1 (decoded whole) under twice the input."""
    assert jpeg_reduction(300 * factor, 400 * factor, 300, 1000) == factor            # input 300 x 400
    assert jpeg_reduction(299 * factor, 400 * factor, 300, 1000) == factor // 2
    assert jpeg_reduction(400 * factor, 299 * factor, 300, 1000) == factor // 2       # portrait
    assert jpeg_reduction(100 * factor, 500 * factor, 300, 500) == factor             # input 100 x 500
    assert jpeg_reduction(100 * factor, 499 * factor, 300, 500) == factor // 2
    assert jpeg_reduction(300 * 20, 400 * 20, 300, 1000) == 8 and jpeg_reduction(599, 800, 300, 1000) == 1


def _jpeg(height: int, width: int, orientation: int = 1) -> bytes:
    """A smooth random JPEG (EXIF ``orientation``) of ``height`` x ``width`` as stored."""
    small = np.random.default_rng(0).integers(0, 255, (height // 16, width // 16, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    Image.fromarray(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)).save(
        out, 'JPEG', quality=90, exif=exif.tobytes())
    return out.getvalue()


@pytest.mark.parametrize('orientation', [1, 6])
def test_a_large_jpeg_decodes_reduced_and_is_prepared_as_the_whole_picture(orientation):
    """With ``fit`` a 1600 x 1200 JPEG (turned by its EXIF or not) decodes at 1/4 for a 400 x 300
    input, and ``preprocess`` gives the whole picture's sizes and nearly its network input."""
    data = _jpeg(1200, 1600, orientation)
    whole, reduced = decode_image(data), decode_image(data, fit=(300, 1000))
    assert isinstance(reduced, ReducedImage) and reduced.full_hw == whole.shape[:2]
    assert reduced.shape[:2] == (whole.shape[0] // 4, whole.shape[1] // 4)
    (chw, meta), (fast_chw, fast_meta) = preprocess(whole, 300, 1000), preprocess(reduced, 300, 1000)
    assert fast_meta == meta and meta.orig_hw == whole.shape[:2]
    assert meta.resized_hw == ((300, 400) if orientation == 1 else (400, 300))
    assert np.abs(fast_chw - chw).mean() < 0.05           # normalised units: under 3 of 255 grey levels


def test_only_a_large_enough_jpeg_decodes_reduced(tmp_path):
    """A JPEG under twice the input, a PNG, a WebP: decoded whole, as without ``fit``; a file too."""
    big = cv2.resize(np.random.default_rng(1).integers(0, 255, (75, 100, 3), dtype=np.uint8), (1600, 1200))
    for data in (_jpeg(590, 800), cv2.imencode('.png', big)[1].tobytes(), cv2.imencode('.webp', big)[1].tobytes()):
        fast = decode_image(data, fit=(300, 1000))
        assert type(fast) is np.ndarray
        np.testing.assert_array_equal(fast, decode_image(data))
    (tmp_path / 'a.jpg').write_bytes(_jpeg(1200, 1600))
    assert read_image(tmp_path / 'a.jpg', fit=(300, 1000)).full_hw == (1200, 1600)


def test_the_pixel_limit_refuses_a_jpeg_bomb_before_any_decoding(monkeypatch):
    """A JPEG whose header says 30000 x 20000 is refused on that size with ``fit`` too, nothing decoded."""
    data = bytearray(_jpeg(32, 32))
    start = data.index(b'\xff\xc0') + 5
    data[start:start + 4] = (20000).to_bytes(2, 'big') + (30000).to_bytes(2, 'big')
    monkeypatch.setattr(transforms.cv2, 'imdecode', lambda *args: pytest.fail('decoded'))
    with pytest.raises(LimitError, match='is 30000x20000 = 600 MP, over the limit of 100 MP'):
        decode_image(bytes(data), fit=(300, 1000))


def test_a_reduced_decoding_that_is_not_what_its_header_says_is_decoded_whole(monkeypatch):
    """An EXIF orientation that OpenCV does not read as Pillow does: the whole picture, not a wrong grid."""
    data = _jpeg(1200, 1600)
    monkeypatch.setattr(transforms.JpegImagePlugin.JpegImageFile, 'getexif', lambda self: {0x0112: 6})
    fast = decode_image(data, fit=(300, 1000))
    assert type(fast) is np.ndarray and fast.shape == (1200, 1600, 3)


def test_unknown_channels_are_refused_not_read_as_rgb():
    with pytest.raises(ValueError, match="unknown channels 'BGR'"):
        to_rgb(np.zeros((4, 4, 3), np.uint8), 'BGR')
