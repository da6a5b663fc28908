"""What ``Segmenter`` takes and gives besides one picture: a list with ``batch_size``, PIL
images, grey and RGBA arrays, per-call thresholds, ``close()`` and ``with``, and 'auto''s
``cache_dir`` and ``progress``."""
import gc
import io
import logging
import os
import threading
import weakref

import cv2
import numpy as np
import pytest

from solov2.api import InputError, Instances, Segmenter
from solov2.core.paths import CACHE_ENV, cache_root
from solov2.data.transforms import read_image
from solov2.model.inference import pipeline
from solov2.model.inference.auto_backend import STAGES, installed_engines
from solov2.model.inference.batching import Batching
from solov2.model.inference.device_postprocess import postprocess_on_device
from solov2.model.inference.pipeline import PipelineOptions, Predictor
from solov2.model.inference.spec import ModelSpec
from tests.helpers import REPO_DIR
from tests.pictures import large_jpeg

WEIGHTS = str(REPO_DIR / 'weights' / 'shapes_r18.pdparams')
SQUARE = sorted((REPO_DIR / 'images').glob('shapes_0*.jpg'))       # 256 x 256
WIDE = REPO_DIR / 'images' / 'shapes_wide.jpg'                      # 256 x 512: another padded size


@pytest.fixture(scope='module')
def seg():
    return Segmenter(WEIGHTS, backend='dygraph', device='cpu', threads=2)


def _same(a: Instances, b: Instances, exact: bool = True):
    """The same instances; ``exact=False``: up to float rounding (a batched network run may
    sum in another order than a single one on some CPUs)."""
    assert len(a) == len(b) > 0
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6 if exact else 1e-4, atol=0 if exact else 1e-5)
    if exact:
        np.testing.assert_array_equal(a.masks, b.masks)
        np.testing.assert_array_equal(a.boxes, b.boxes)
    else:
        assert np.count_nonzero(a.masks != b.masks) <= 2 * len(a), 'masks differ beyond border pixels'


def _recording(monkeypatch, backend) -> list:
    """The batch sizes and input sizes of ``backend.run`` calls from now on."""
    calls, run = [], backend.run

    def recorded(batch, regions=None):
        calls.append((len(batch), batch.shape[2:]))
        return run(batch, regions)
    monkeypatch.setattr(backend, 'run', recorded)
    return calls


def test_a_list_gives_its_instances_in_order_as_one_by_one(seg, monkeypatch):
    """``seg(list, batch_size=3)`` runs up to 3 pictures per network call, those of one padded
    size together (the wide one alone), and gives what one call per picture gives."""
    items = [SQUARE[0], cv2.imread(str(SQUARE[1])), WIDE, SQUARE[2], str(SQUARE[3])]
    one_by_one = [seg(item) for item in items]
    calls = _recording(monkeypatch, seg.backend)
    batched = seg(items, batch_size=3)
    assert isinstance(batched, list) and len(batched) == len(items)
    sizes = sorted((size, tuple(shape)) for size, shape in calls)
    assert [size for size, _ in sizes] == [1, 2, 2], calls      # [0, 1 | 2] [3, 4], run in the order they are read
    assert sizes[0][1] != sizes[1][1] == sizes[2][1]             # the wide one alone
    for got, want in zip(batched, one_by_one):
        _same(got, want, exact=False)
    calls.clear()
    for got, want in zip(seg(tuple(items)), one_by_one):     # batch_size 1: one picture per call
        _same(got, want)
    assert [size for size, _ in calls] == [1] * len(items)
    assert seg([]) == []


def test_stream_batches_too(seg, monkeypatch):
    want = [seg(path) for path in SQUARE]
    calls = _recording(monkeypatch, seg.backend)
    streamed = list(seg.stream(SQUARE, batch_size=4))
    assert [source for source, _ in streamed] == SQUARE and [size for size, _ in calls] == [4]
    for (_, got), expected in zip(streamed, want):
        _same(got, expected, exact=False)


def test_a_picture_that_cannot_be_read_in_a_list_is_named(seg, tmp_path):
    bad = tmp_path / 'notes.jpg'
    bad.write_text('not a picture')
    with pytest.raises(InputError, match=r'picture 1 of the list \(.*notes.jpg\): cannot read image'):
        seg([SQUARE[0], bad, SQUARE[1]], batch_size=2)
    with pytest.raises(InputError, match=r'picture 0 of the list \(an array\): an image array must be'):
        seg([np.zeros((4, 4), np.float32)])


@pytest.mark.parametrize('batch_size', [0, -1, 1.5, True, '2'])
def test_a_bad_batch_size_is_one_input_error(seg, batch_size):
    with pytest.raises(InputError, match='batch_size must be a whole number of at least 1'):
        seg([SQUARE[0]], batch_size=batch_size)


def test_pil_images_are_rgb_whatever_channels_says(seg):
    image_module = pytest.importorskip('PIL.Image')
    want = seg(SQUARE[0])
    picture = image_module.open(SQUARE[0])
    _same(seg(picture), want)                               # the default channels='bgr' is for arrays
    _same(seg(picture, channels='rgb'), want)
    rgba = picture.convert('RGBA')
    _same(seg(rgba), want)
    results = seg([picture, rgba], batch_size=2)
    _same(results[0], want, exact=False)


def test_grey_and_rgba_arrays_are_read_as_their_files(seg, tmp_path):
    """A grey [H, W] array gives what its grey PNG gives; a BGRA array what its BGR picture
    gives (alpha dropped), as for files."""
    bgr = cv2.imread(str(SQUARE[1]))
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / 'grey.png'), grey)
    _same(seg(grey), seg(tmp_path / 'grey.png'))
    np.testing.assert_array_equal(seg.rgb(grey), read_image(tmp_path / 'grey.png'))
    bgra = np.dstack([bgr, np.full(grey.shape, 128, np.uint8)])
    _same(seg(bgra), seg(bgr))
    _same(seg(bgra[..., [2, 1, 0, 3]], channels='rgb'), seg(bgr))


def test_bytes_and_file_objects_are_read_as_their_files(seg, tmp_path):
    """An upload as it arrives: the bytes of a picture file, ``io.BytesIO`` of them or the
    open file give what the path gives, alone, in a list and in ``stream``."""
    data = SQUARE[0].read_bytes()
    want = seg(SQUARE[0])
    _same(seg(data), want)
    _same(seg(bytearray(data)), want)
    _same(seg(io.BytesIO(data)), want)
    with open(SQUARE[0], 'rb') as opened:
        _same(seg(opened), want)
    np.testing.assert_array_equal(seg.rgb(memoryview(data)), read_image(SQUARE[0]))
    listed = seg([io.BytesIO(data), data, SQUARE[1].read_bytes()], batch_size=2)
    _same(listed[0], want, exact=False)
    _same(listed[2], seg(SQUARE[1]), exact=False)
    streamed = list(seg.stream(data))
    assert [source for source, _ in streamed] == [data]
    _same(streamed[0][1], want)


def _truncated_pil(path):
    """A PIL image of the first 3000 bytes of a JPEG: Pillow opens it, and fails when it decodes."""
    image_module = pytest.importorskip('PIL.Image')
    return image_module.open(io.BytesIO(path.read_bytes()[:3000]))


@pytest.mark.parametrize('make, message', [
    (lambda path: b'not a picture at all', 'cannot read the picture in the bytes given'),
    (lambda path: b'', 'cannot read the picture in the bytes given'),
    (lambda path: io.BytesIO(path.read_bytes()[:40]), 'cannot read the picture in the file object'),
    (lambda path: io.StringIO('text'), 'gave str, not bytes — open it in binary mode'),
    (_truncated_pil, 'cannot read the PIL image given'),
])
def test_every_picture_that_does_not_decode_is_one_input_error(seg, make, message, monkeypatch):
    """Bytes, file objects and PIL images that do not decode (a truncated JPEG opened by
    Pillow, which decodes on first use) raise InputError, alone and named in a list. Pillow's
    process-wide ``LOAD_TRUNCATED_IMAGES`` is the host's choice (PaddleDetection's trainer
    sets it on import, and Pillow then pads a truncated picture with grey): pinned to
    Pillow's default here."""
    image_file = pytest.importorskip('PIL.ImageFile')
    monkeypatch.setattr(image_file, 'LOAD_TRUNCATED_IMAGES', False)
    with pytest.raises(InputError, match=message):
        seg(make(SQUARE[0]))
    with pytest.raises(InputError, match=r'picture 0 of the list \((bytes|a file object|a PIL image)\): .*' + message):
        seg([make(SQUARE[0])])


def test_the_pixel_limit_holds_for_arrays_pil_images_and_bytes(tmp_path):
    """``max_image_pixels`` refuses arrays, PIL images and bytes over it as it refuses
    files, before decoding or converting them."""
    image_module = pytest.importorskip('PIL.Image')
    small = Segmenter(WEIGHTS, backend='dygraph', device='cpu', threads=1, overrides={'max_image_pixels': 256 * 255})
    bgr = cv2.imread(str(SQUARE[0]))                                   # 256 x 256
    for picture, what in [(bgr, 'the array given'), (image_module.open(SQUARE[0]), 'the PIL image given'),
                          (SQUARE[0].read_bytes(), 'the picture in the bytes given'), (SQUARE[0], 'image .*')]:
        with pytest.raises(InputError, match=f'{what} is 256x256 = 0 MP, over the limit'):
            small(picture)
    assert len(small(bgr[:255])) >= 0                                   # at the limit: read


def test_a_per_call_threshold_equals_constructing_with_it(seg):
    """``score_threshold=`` and ``max_instances=`` give what a Segmenter built with the
    overrides ``score_threshold`` / ``max_per_image`` gives, and change nothing after the call."""
    everything = seg(SQUARE[0], min_score=0)
    high = Segmenter(WEIGHTS, backend='dygraph', device='cpu', threads=2, overrides={'score_threshold': 0.6})
    _same(seg(SQUARE[0], score_threshold=0.6), high(SQUARE[0]))
    assert 0 < len(high(SQUARE[0], min_score=0)) < len(everything)
    few = Segmenter(WEIGHTS, backend='dygraph', device='cpu', threads=2, overrides={'max_per_image': 3})
    _same(seg(SQUARE[0], max_instances=3), few(SQUARE[0]))
    assert len(few(SQUARE[0])) == 3
    _same(seg(SQUARE[0], min_score=0), everything)          # the call changed nothing
    _same(seg(SQUARE[:2], batch_size=2, score_threshold=0.6)[0], high(SQUARE[0]), exact=False)
    _same(next(seg.stream([SQUARE[0]], score_threshold=0.6))[1], high(SQUARE[0]))


def test_per_call_thresholds_on_the_device_path_equal_the_numpy_path(seg, monkeypatch):
    """Where the DygraphBackend post-processes on its device (a GPU; forced here on the CPU), a
    call's ``score_threshold`` and ``max_instances`` reach the device post-processing, for one
    picture, a batch and a stream, and give the numpy path's instances (labels, scores within
    1e-5, masks but at threshold ties)."""
    calls = [((0.6, None), lambda **kw: seg(SQUARE[0], **kw)),
             ((None, 3), lambda **kw: seg(SQUARE[:2], batch_size=2, **kw)[1]),
             ((0.6, 2), lambda **kw: next(seg.stream([WIDE], **kw))[1])]
    want = [call(score_threshold=threshold, max_instances=most) for (threshold, most), call in calls]
    seen = []

    def recorded(scores, kernels, feat, params, metas=None):
        seen.append((len(metas), params.score_threshold, params.max_per_image))
        return postprocess_on_device(scores, kernels, feat, params, metas)
    monkeypatch.setattr(pipeline, 'postprocess_on_device', recorded)
    monkeypatch.setattr(seg, '_predictor', Predictor(seg.backend, on_device=True))
    for expected, ((threshold, most), call) in zip(want, calls):
        got = call(score_threshold=threshold, max_instances=most)
        assert len(got) == len(expected) > 0 and len(got) <= (most or len(got))
        np.testing.assert_array_equal(got.labels, expected.labels)
        np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-5, atol=1e-7)
        assert np.count_nonzero(got.masks != expected.masks) <= 4 * len(got), 'masks differ beyond threshold ties'
    params = seg.predictor.params
    assert seen == [(1, 0.6, params.max_per_image), (2, params.score_threshold, 3), (1, 0.6, 2)]


def test_min_score_keeps_the_instances_scoring_at_least_it(seg):
    confident = seg(SQUARE[0], min_score=0).filter(min_score=0.5)
    assert 0 < len(confident) < len(seg(SQUARE[0], min_score=0))
    _same(seg(SQUARE[0], min_score=0.5), confident)
    _same(seg(SQUARE[:2], min_score=0.5)[0], confident)


@pytest.mark.parametrize('kwargs, message', [
    ({'score_threshold': 1.5}, 'score_threshold must be a number from 0 to 1'),
    ({'score_threshold': '0.5'}, 'score_threshold must be a number from 0 to 1'),
    ({'max_instances': 0}, 'max_instances must be a whole number of at least 1'),
    ({'max_instances': 2.5}, 'max_instances must be a whole number of at least 1'),
    ({'min_score': -0.1}, 'min_score must be a number from 0 to 1'),
])
def test_bad_thresholds_are_one_input_error(seg, kwargs, message):
    with pytest.raises(InputError, match=message):
        seg(SQUARE[0], **kwargs)


def test_close_and_with_release_the_model():
    with Segmenter(WEIGHTS, backend='dygraph', device='cpu', threads=2) as opened:
        assert len(opened(SQUARE[0])) > 0
        released = weakref.ref(opened.backend)
    assert repr(opened) == 'Segmenter(config=9, closed)'
    gc.collect()
    assert released() is None, 'the backend outlived close()'
    for call in (lambda: opened(SQUARE[0]), lambda: list(opened.stream(SQUARE)), lambda: opened.class_names):
        with pytest.raises(InputError, match=r'this Segmenter is closed — make a new Segmenter\(\.\.\.\)'):
            call()
    opened.close()                                        # again: nothing happens


def test_cache_dir_and_progress_of_the_first_auto_export(tmp_path, seg, monkeypatch):
    """``cache_dir`` puts 'auto''s export there instead of $SOLOV2_CACHE; ``progress`` hears
    its stages in order with growing fractions, 'done' at 1.0 last, and nothing once the
    export is in the cache. A batch on the exported engine gives what one picture at a time
    gives."""
    if not installed_engines():
        pytest.skip('auto exports only with openvino or onnxruntime and paddle2onnx installed')
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / 'env_cache'))     # empty: another test may fill the session's
    heard = []
    exported = Segmenter(WEIGHTS, cache_dir=str(tmp_path / 'cache'), threads=2, device='cpu',
                         progress=lambda stage, fraction: heard.append((stage, fraction)))
    assert exported.backend.name in ('openvino', 'onnx')
    stages = [stage for stage, _ in heard]
    assert stages[:3] == ['load', 'export', 'verify'] and heard[-1] == ('done', 1.0)
    assert stages == [stage for stage in STAGES if stage in stages]
    assert [fraction for _, fraction in heard] == sorted(fraction for _, fraction in heard)
    entries = [p.name for p in (tmp_path / 'cache').iterdir() if p.name.startswith('config9-auto-')]
    assert len(entries) == 1 and not cache_root().exists()
    heard.clear()
    again = Segmenter(WEIGHTS, cache_dir=str(tmp_path / 'cache'), threads=2, device='cpu',
                      progress=lambda stage, fraction: heard.append((stage, fraction)))
    assert heard == [] and again.backend.name == exported.backend.name
    items = SQUARE[:3] + [WIDE]
    for got, want in zip(again(items, batch_size=4), [again(path) for path in items]):
        _same(got, want, exact=False)


def test_a_failed_auto_export_falls_back_to_dygraph_with_a_warning_that_says_why(tmp_path, monkeypatch, caplog):
    """Paddle 2.6 with paddle2onnx 2.x (what the 'deploy' extra installs there): the export
    cannot run, ``auto`` uses dygraph and says why at WARNING, which a program that configures
    no logging still shows (Python's last-resort handler), on either Paddle line."""
    import importlib.metadata

    from solov2.model.inference import auto_backend, export
    versions = {'paddle2onnx': '2.0.1', 'onnx': '1.17.0'}
    monkeypatch.setattr(auto_backend, 'installed_engines', lambda: ['onnx'])
    monkeypatch.setattr(export, 'paddle_major', lambda: 2)
    monkeypatch.setattr(importlib.metadata, 'version', lambda name: versions[name])
    with caplog.at_level(logging.WARNING, logger='solov2'):
        fallen = Segmenter(WEIGHTS, cache_dir=str(tmp_path), threads=1, device='cpu')
    assert fallen.backend.name == 'dygraph'
    assert fallen.backend.fallback == 'auto: could not export for onnx: dygraph runs instead (several times slower)'
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and warned[0].name == auto_backend.LOG.name, caplog.records
    assert warned[0].getMessage().startswith('auto: could not export for onnx (paddle2onnx 2.0.1 needs Paddle >= 3.0')
    assert 'install paddle2onnx==1.3.1 (requirements-deploy-paddle26.txt, the deploy-paddle26 extra)): using dygraph' \
        in warned[0].getMessage()


def test_answers_leave_out_what_scores_under_0_3_unless_asked(seg):
    """``seg(...)``, ``stream`` and ``stream_video`` answer the instances scoring at least 0.3 by
    default (what a person calls an object); ``min_score=0`` gives every one."""
    everything = seg(SQUARE[1], min_score=0)
    shown = seg(SQUARE[1])
    assert 0 < len(shown) < len(everything) and everything.scores[len(shown)] < 0.3
    _same(shown, everything.filter(min_score=0.3))
    _same(next(seg.stream([SQUARE[1]]))[1], shown)
    _same(next(seg.stream([SQUARE[1]], min_score=0))[1], everything)
    _same(seg([SQUARE[1]])[0], shown)


def _counting(monkeypatch, module, name) -> list:
    """The calls of ``module.name`` from now on (their first argument)."""
    calls, original = [], getattr(module, name)
    monkeypatch.setattr(module, name, lambda first, *args: calls.append(first) or original(first, *args))
    return calls


def test_an_answer_pastes_and_encodes_only_what_it_holds(seg, monkeypatch):
    """``min_score`` leaves the instances out before any mask is pasted; ``to_dict('none')``
    gives the boxes of ``to_dict()`` without pasting a mask and 'polygons' encodes no RLE."""
    from solov2.data import results
    from solov2.model.inference import postprocess
    monkeypatch.setattr(postprocess, 'WHOLE_PASTE_SHARE', 1.0)        # every mask pasted in its window
    everything = seg(SQUARE[0], min_score=0).to_dict()
    pastes, encodes = _counting(monkeypatch, postprocess, '_paste_pending'), _counting(monkeypatch, results,
                                                                                       'encode_crop_rle')
    answered = seg(SQUARE[0], min_score=0.5).to_dict()
    assert 0 < len(pastes) == len(encodes) == len(answered['instances']) < len(everything['instances'])
    assert answered['instances'] == [one for one in everything['instances'] if one['score'] >= 0.5]
    del pastes[:], encodes[:]
    boxes = seg(SQUARE[0], min_score=0).to_dict('none')
    assert pastes == encodes == [] and boxes['instances'] == [
        {key: value for key, value in one.items() if key != 'mask'} for one in everything['instances']]
    outlines = seg(SQUARE[0], min_score=0).to_dict('polygons')
    assert encodes == [] and len(pastes) == len(everything['instances'])
    assert [one['box'] for one in outlines['instances']] == [one['box'] for one in everything['instances']]
    with pytest.raises(InputError, match='masks must be one of rle, polygons, none'):
        seg(SQUARE[0]).to_dict('png')


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two [H, W] bool masks."""
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


def nearly_the_same(got: Instances, want: Instances, least_score: float = 0.3, least_iou: float = 0.85,
                    mean_iou: float = 0.95, score_gap: float = 0.05) -> None:
    """Each of ``want`` scoring ``least_score`` or more has one of ``got`` (whose scores may be
    lower by ``score_gap``) of its label whose mask overlaps it by ``least_iou`` (``mean_iou`` on
    average) and whose score is within ``score_gap``; and the other way round."""
    assert got.image_size == want.image_size
    for one, other in ((got, want), (want, got)):
        kept = other.scores >= least_score
        best = [max(((iou(mask, theirs), their_score) for theirs, their_label, their_score in
                     zip(one.masks, one.labels, one.scores) if their_label == label), default=(0, 0))
                for mask, label in zip(other.masks[kept], other.labels[kept])]
        overlaps, scores = np.array(best).T
        assert len(best) > 0 and overlaps.min() >= least_iou and overlaps.mean() >= mean_iou, overlaps
        np.testing.assert_allclose(scores, other.scores[kept], atol=score_gap)


def test_fast_decode_answers_a_large_jpeg_on_its_full_grid_with_nearly_the_same_instances(seg, tmp_path):
    """``fast_decode=True``: a 2560 x 1280 JPEG decoded at 1/4 for the 640 x 320 input gives its
    instances on the whole picture's grid, nearly those of the whole decoding, alone, in a list
    or from a file; a PNG gives exactly those of the default."""
    fast = Segmenter(WEIGHTS, backend='dygraph', device='cpu', threads=2, fast_decode=True)
    data = large_jpeg(WIDE, 5)
    assert fast.predictor.read(data).shape == (320, 640, 3) and fast.predictor.reader.fast_decode
    quick, whole = fast(data, min_score=0.25), seg(data, min_score=0.25)
    assert quick.image_size == (1280, 2560) and quick.masks.shape[1:] == (1280, 2560)
    nearly_the_same(quick, whole)
    (tmp_path / 'large.jpg').write_bytes(data)
    for again in (fast([data], min_score=0.25)[0], fast(tmp_path / 'large.jpg', min_score=0.25)):
        _same(again, quick)
    png = cv2.imencode('.png', cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))[1].tobytes()
    _same(fast(png, min_score=0.25), whole, exact=False)


def test_a_lists_pictures_are_read_ahead_by_what_their_headers_say_they_will_hold(seg, tmp_path, monkeypatch):
    """``PictureReader.cost``: the bytes reading and preparing a picture holds at its peak, known before
    it is read (a regular file's or bytes' header: while decoding; a PIL image's or an array's size: once
    prepared; a file object's not), which a list's and a stream's read-ahead goes by."""
    from PIL import Image

    from solov2.model.inference.reading import PictureReader
    from tests.pictures import webp_bomb
    reader = PictureReader(0, 320, 640)
    network_input = 3 * 4 * 320 * 480
    decoding, prepared = 7 * 3000 * 2000 + 3 * network_input, 3 * 3000 * 2000 + network_input
    (tmp_path / 'big.webp').write_bytes(webp_bomb(3000, 2000))
    for image in (tmp_path / 'big.webp', str(tmp_path / 'big.webp'), webp_bomb(3000, 2000)):
        assert reader.cost(image) == decoding
    for image in (Image.new('RGB', (3000, 2000)), np.zeros((2000, 3000, 3), np.uint8), np.zeros((2000, 3000))):
        assert reader.cost(image) == prepared
    assert reader.cost(io.BytesIO(webp_bomb(3000, 2000))) is None
    assert reader.cost(tmp_path / 'missing.jpg') is None
    if hasattr(os, 'mkfifo'):            # a FIFO's header is not read: that would take the bytes its reader needs
        os.mkfifo(tmp_path / 'held.webp')
        writer = os.open(tmp_path / 'held.webp', os.O_RDWR)
        try:
            os.write(writer, webp_bomb(3000, 2000))
            found = []       # reading it would wait for the writer's end (closed below, which ends such a read)
            asking = threading.Thread(target=lambda: found.append(reader.cost(tmp_path / 'held.webp')), daemon=True)
            asking.start()
            asking.join(10)
            assert found == [None]
            assert os.read(writer, 1 << 20) == webp_bomb(3000, 2000)
        finally:
            os.close(writer)
    costs = []
    monkeypatch.setattr(Predictor, 'run_pictures',
                        lambda self, images, *args, cost, **kwargs: costs.append(cost) or (none for none in ()))
    seg([webp_bomb(3000, 2000)])
    list(seg.stream([webp_bomb(3000, 2000)]))
    assert [cost(webp_bomb(3000, 2000)) for cost in costs] == [decoding, decoding]


@pytest.mark.parametrize('backend', ['dygraph', 'auto'])
def test_a_segmenter_checks_its_model_spec_once(backend, monkeypatch):
    """One ``ModelSpec.check`` per open, before a published name would be fetched (the
    session's export cache serves 'auto')."""
    real, checked = ModelSpec.check, []
    monkeypatch.setattr(ModelSpec, 'check', lambda spec, named=None: checked.append(spec) or real(spec, named))
    Segmenter(WEIGHTS, backend=backend, device='cpu', threads=1).close()
    assert len(checked) == 1, checked


@pytest.mark.parametrize('whole_share', [1.0, 0.0], ids=['in its window', 'whole'])
def test_one_instance_taken_by_index_pastes_its_mask_once(seg, monkeypatch, whole_share):
    """``result[i]`` pastes instance i's mask once, no other, whichever way it is pasted; its ``crop``
    and box come from that one paste, and taking it again pastes nothing (a paste is the costly part)."""
    from solov2.model.inference import postprocess
    monkeypatch.setattr(postprocess, 'WHOLE_PASTE_SHARE', whole_share)
    pastes = _counting(monkeypatch, postprocess, '_paste_pending')
    result = seg(SQUARE[0], min_score=0)
    assert len(result) > 2 and pastes == []
    one = result[1]
    assert len(pastes) == 1 and one.crop.any()
    assert np.array_equal(result[1].crop, one.crop) and len(pastes) == 1
    assert one.box == tuple(result.boxes[1]) and one.crop.shape == (one.box[3] - one.box[1], one.box[2] - one.box[0])


def test_the_host_sets_the_pipeline_of_the_one_predictor_and_close_stops_its_threads():
    """``Segmenter(..., pipeline=PipelineOptions(...))``: its one predictor's batching, threads and bytes in
    flight as the host says (anything else refused by name); ``close()`` lets a stream still running finish,
    then its threads end (its queue's, reading, network and finishing)."""
    options = PipelineOptions(Batching(max_batch=2), workers=3, readers=1, in_flight_bytes=2**28)
    seg = Segmenter(WEIGHTS, backend='dygraph', device='cpu', threads=1, pipeline=options)
    predictor = seg.predictor
    assert (predictor.queue.finishing.workers, predictor.queue.reading.workers) == (3, 1)
    assert predictor.budget.limit == 2**28 and predictor.queue.batching.max_batch == 2
    with pytest.raises(InputError, match='pipeline takes a PipelineOptions'):
        Segmenter(WEIGHTS, backend='dygraph', pipeline={'workers': 3})
    stream = seg.stream([str(path) for path in SQUARE[:3]])
    next(stream)
    seg.close()
    assert len(list(stream)) == 2                                  # the stream finishes
    threads = list(predictor.queue.threads)
    for thread in threads:
        thread.join(10)
    assert threads and not [thread.name for thread in threads if thread.is_alive()]
