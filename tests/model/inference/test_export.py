"""Deployment: export (tools/export_model.py), the three backends (model/inference/backend_factory.py),
demo.py's --backend / --video / --dump-inputs and tools/postprocess_raw.py.

Config 9 (the narrow shapes model) and config 5 (light R18) with random weights; the
category bias of one class is raised so the model detects things. Marked ``deploy``: without
paddle2onnx, onnx and onnxruntime (requirements-deploy.txt) the module is skipped, with that
reason in the summary.
"""
import json
import os
from pathlib import Path

import pytest

pytest.importorskip('onnx', reason='deploy test: needs requirements-deploy.txt')
pytest.importorskip('onnxruntime', reason='deploy test: needs requirements-deploy.txt')
pytest.importorskip('paddle2onnx', reason='deploy test: needs requirements-deploy.txt')

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import paddle
import paddle2onnx  # noqa: F401
import pycocotools.mask as mask_util

from solov2 import SHIPPED_WEIGHTS
from solov2.config import CONFIGS, with_overrides
from solov2.data.transforms import normalize
from solov2.model.build import build_model
from solov2.model.checkpoint import save_checkpoint
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.model.inference.export import compare_outputs
from solov2.model.inference.export_network import ExportableSOLOv2, network_feed
from solov2.model.inference.onnxruntime_backend import OnnxBackend
from solov2.model.inference.paddle_inference_backend import InferenceBackend
from solov2.model.inference.postprocess import paste_in_boxes
from solov2.model.layers import coord_features
from solov2.tools import demo, export_model, postprocess_raw
from tests.helpers import (
    REPO_DIR,
    built_once,
    dcn_export_refused,
    get_eval_model,
    outputs_detections,
    soft_detections,
)

paddle.set_device('cpu')
pytestmark = [pytest.mark.deploy,
              pytest.mark.filterwarnings("ignore:Tensor do not have 'place':UserWarning"),
              pytest.mark.filterwarnings('ignore:The Attr\\(force_cpu\\):UserWarning')]

NUMBER = 9
HOT_CLASS = 0
SIZES = [(128, 160), (192, 128)]          # two network input sizes (multiples of 32)
OUTPUT_TOL = 1e-4
SCORE_TOL = 1e-4
MIN_MASK_IOU = 0.999
DEMO_OPTS = ['--opt', 'test_short=96', 'test_max=128', 'max_per_image=30', '--warmup', '0']
IMAGES = [('a_wide.png', 90, 120), ('b_tall.jpg', 120, 90)]
VIDEO_FRAMES, VIDEO_HW = 5, (72, 88)


def _checkpoint(pytestconfig, folder: Path, bias: float, number: int = NUMBER) -> str:
    state = {k: v.numpy() for k, v in get_eval_model(pytestconfig, number).state_dict().items()}
    cate_bias = state['head.cate_pred.bias'].copy()
    cate_bias[HOT_CLASS] = bias
    state['head.cate_pred.bias'] = cate_bias
    path = str(folder / f'config{number}.pdparams')
    save_checkpoint(state, path, number, CONFIGS[number], 'random')
    return path


def _export(weights: str, out: Path, *extra) -> Path:
    code = export_model.main(['--weights', weights, '--output', str(out), '--format', 'both', *extra])
    assert code == 0
    return out


@pytest.fixture(scope='module')
def hot(run_builds, pytestconfig):
    """(weights, export folder) of a model that detects HOT_CLASS, made once a test run (``built_once``:
    this module's, test_openvino.py's and others' tests share it; they only read it). Not verified
    by the export: ``test_backends_agree`` compares both engines with dygraph, to closer tolerances."""
    folder = built_once(run_builds / 'hot', lambda folder: _export(_checkpoint(pytestconfig, folder, 4.0),
                                                                   folder / 'export', '--no-verify'))
    return str(folder / f'config{NUMBER}.pdparams'), folder / 'export'


def _backends(weights: str, export_dir: Path, number: int = NUMBER):
    return [DygraphBackend(CONFIGS[number], weights, 'cpu'), InferenceBackend(str(export_dir), threads=1),
            OnnxBackend(str(export_dir), threads=1)]


def _batch(height: int, width: int, seed: int) -> np.ndarray:
    """A drawn picture with noise, normalised: [1, 3, H, W] float32 (no exact ties in
    points-NMS between neighbouring cells)."""
    rng = np.random.RandomState(seed)
    image = rng.randint(0, 255, (height, width, 3)).astype(np.uint8)
    cv2.rectangle(image, (4, 6), (width // 2, height // 2), (250, 40, 40), -1)
    cv2.circle(image, (width * 2 // 3, height * 2 // 3), min(height, width) // 5, (30, 200, 60), -1)
    return normalize(image)[None]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


# ---- dynamic-shape model code ------------------------------------------------------------------

def test_static_coordinates_equal_dygraph_linspace():
    """The CoordConv channels of a traced graph (sizes known only at run time) equal
    the dygraph ones (paddle.linspace) bit for bit, for every size up to 200."""
    class Coords(paddle.nn.Layer):
        def forward(self, x):
            return coord_features(x)

    static = paddle.jit.to_static(Coords(), input_spec=[
        paddle.static.InputSpec([None, 1, None, None], 'float32', 'x')], full_graph=True)
    for count in list(range(1, 60)) + [63, 64, 99, 100, 101, 127, 128, 199, 200]:
        x = paddle.zeros([2, 1, count, max(1, 201 - count)])
        np.testing.assert_array_equal(static(x).numpy(), coord_features(x).numpy(), err_msg=str(count))


# ---- the export itself -----------------------------------------------------------------------

def test_export_writes_models_and_infer_cfg(hot):
    _, out = hot
    names = {p.name for p in out.iterdir()}
    assert {'model.pdiparams', 'model.onnx', 'infer_cfg.json'} <= names
    assert names & {'model.json', 'model.pdmodel'}
    info = json.loads((out / 'infer_cfg.json').read_text())
    cfg = CONFIGS[NUMBER]
    assert info['config'] == NUMBER
    assert info['class_names'] == list(cfg.class_names)
    assert (info['test_short'], info['test_max']) == (cfg.test_short, cfg.test_max)
    assert info['input']['mean'] == [123.675, 116.28, 103.53]
    assert info['input']['std'] == [58.395, 57.12, 57.375]
    assert (info['input']['min_size'], info['input']['max_size']) == (64, 1344)
    assert info['postprocess']['score_threshold'] == cfg.score_threshold
    assert info['postprocess']['num_grids'] == list(cfg.num_grids)
    assert info['num_cells'] == sum(s * s for s in cfg.num_grids)


def test_onnx_group_norm_epsilon_and_names(hot):
    for name, inputs in (('model.onnx', ['image']), ('model_regions.onnx', ['image', 'regions'])):
        model = onnx.load(str(hot[1] / name))
        norms = [n for n in model.graph.node if n.op_type in ('InstanceNormalization', 'GroupNormalization')]
        assert norms, 'GroupNorm should appear in the graph'
        for node in norms:
            (epsilon,) = [a.f for a in node.attribute if a.name == 'epsilon']
            assert epsilon == np.float32(1e-5), (node.name, epsilon)
        assert [o.name for o in model.graph.output] == ['scores', 'kernels', 'mask_feat']
        assert [i.name for i in model.graph.input] == inputs, name
        dims = model.graph.input[0].type.tensor_type.shape.dim
        assert dims[1].dim_value == 3
        assert all(not d.HasField('dim_value') for i, d in enumerate(dims) if i != 1), 'B, H, W dynamic'
    regions = model.graph.input[1]
    dims = regions.type.tensor_type.shape.dim
    assert regions.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert not dims[0].HasField('dim_value') and dims[1].dim_value == 2


def test_the_regions_graph_padded_further_gives_the_plain_graphs_outputs(hot):
    """model.onnx is the network traced without ``regions`` (what onnxruntime, Paddle Inference and
    OpenVINO without buckets run: no region mask to remove); model_regions.onnx, on the picture
    padded further and given its size, returns the plain graph's outputs on the picture; with the
    padded size as its region the padding shows."""
    plain, regions = (ort.InferenceSession(str(hot[1] / name), providers=['CPUExecutionProvider'])
                      for name in ('model.onnx', 'model_regions.onnx'))
    picture = _batch(128, 160, seed=4)
    padded = np.zeros((1, 3, 192, 224), np.float32)
    padded[:, :, :128, :160] = picture
    want = plain.run(None, network_feed([i.name for i in plain.get_inputs()], picture))
    names = [i.name for i in regions.get_inputs()]
    got = regions.run(None, network_feed(names, padded, (128, 160)))
    assert [a.shape for a in got] == [a.shape for a in want]
    diffs = compare_outputs(got, want)
    assert max(diffs['kernels'], diffs['mask_feat']) < OUTPUT_TOL, diffs
    unmasked = regions.run(None, network_feed(names, padded))
    assert unmasked[2].shape[2:] == (48, 56)
    assert np.abs(unmasked[1] - want[1]).max() > 1e-3


def test_network_feed_gives_each_graph_its_inputs():
    """``network_feed``, what every runtime feeds an exported graph: the image as contiguous
    float32, ``regions`` only where the graph takes it, the batch's own size unless told."""
    batch = np.arange(2 * 3 * 64 * 96, dtype=np.float64).reshape(2, 3, 64, 96)[:, :, :, ::-1]
    plain = network_feed(['image'], batch)
    assert list(plain) == ['image'] and plain['image'].dtype == np.float32
    assert plain['image'].flags['C_CONTIGUOUS'] and np.array_equal(plain['image'], batch)
    full = network_feed(('image', 'regions'), batch)
    assert full['regions'].dtype == np.int64 and full['regions'].tolist() == [[64, 96], [64, 96]]
    assert network_feed({'regions', 'image'}, batch, (32, 64))['regions'].tolist() == [[32, 64], [32, 64]]


# ---- backends agree ----------------------------------------------------------------------------

@pytest.mark.parametrize('size', SIZES, ids=lambda s: f'{s[0]}x{s[1]}')
def test_backends_agree(hot, size):
    weights, out = hot
    batch = _batch(*size, seed=size[0])
    backends = _backends(weights, out)
    raw = [b.run_numpy(batch) for b in backends]
    height, width = size
    cells = sum(s * s for s in CONFIGS[NUMBER].num_grids)
    assert raw[0][0].shape == (1, cells, CONFIGS[NUMBER].num_classes)
    assert raw[0][2].shape[2:] == (height // 4, width // 4)
    dets = [outputs_detections(b, outputs) for b, outputs in zip(backends, raw)]
    assert len(dets[0]) > 3, 'the hot class should give detections'
    for backend, outputs, det in zip(backends[1:], raw[1:], dets[1:]):
        for name, a, b in zip(('scores', 'kernels', 'mask_feat'), outputs, raw[0]):
            assert a.shape == b.shape, (backend.name, name)
            diff = np.abs(a - b).max()
            assert diff <= OUTPUT_TOL, (backend.name, name, diff)
        assert len(det) == len(dets[0]), backend.name
        np.testing.assert_array_equal(det.labels, dets[0].labels)
        assert np.abs(det.scores - dets[0].scores).max() <= SCORE_TOL, backend.name
        ours = np.asarray(paste_in_boxes(det.masks, size, size))
        ref = np.asarray(paste_in_boxes(dets[0].masks, size, size))
        assert min(_iou(a, b) for a, b in zip(ours, ref)) >= MIN_MASK_IOU, backend.name


def small_export(run_builds, pytestconfig, number: int) -> tuple:
    """(weights, export folder) of config ``number``'s random model (one class's bias raised)
    exported with test sizes 96 / 160, made once a test run (``built_once``: test_openvino.py
    and test_precision_configs.py read it too)."""
    def build(folder: Path) -> None:
        _export(_checkpoint(pytestconfig, folder, 4.0, number=number), folder / 'export', '--no-verify',
                '--opt', 'test_short=96', 'test_max=160')
    folder = built_once(run_builds / f'config{number}_small', build)
    return str(folder / f'config{number}.pdparams'), folder / 'export'


@pytest.fixture(scope='module')
def light_r18(run_builds, pytestconfig):
    """Config 5 (full-width light R18, 80 classes): (weights, export folder) (``small_export``)."""
    return small_export(run_builds, pytestconfig, 5)


def test_config5_backends_agree(light_r18):
    """As above, except that raw scores are compared on the cells every backend keeps:
    this random 80-class model has nearly constant scores, so points-NMS meets exact
    ties that a 1-ulp difference breaks (a handful of the 310k cells; see
    tools/export_model.py compare_outputs)."""
    size = SIZES[0]
    batch = _batch(*size, seed=7)
    backends = _backends(*light_r18, number=5)
    raw = [b.run_numpy(batch) for b in backends]
    dets = [outputs_detections(b, outputs) for b, outputs in zip(backends, raw)]
    assert len(dets[0]) > 3
    for backend, outputs, det in zip(backends[1:], raw[1:], dets[1:]):
        diffs = compare_outputs(outputs, raw[0])
        assert max(diffs['scores'], diffs['kernels'], diffs['mask_feat']) <= OUTPUT_TOL, (backend.name, diffs)
        assert diffs['flipped'] <= 1e-4 * raw[0][0].size, (backend.name, diffs)
        assert len(det) == len(dets[0]), backend.name
        np.testing.assert_array_equal(det.labels, dets[0].labels)
        assert np.abs(det.scores - dets[0].scores).max() <= SCORE_TOL, backend.name
        ious = [_iou(a, b) for a, b in zip(np.asarray(paste_in_boxes(det.masks, size, size)),
                                           np.asarray(paste_in_boxes(dets[0].masks, size, size)))]
        assert min(ious) >= MIN_MASK_IOU, backend.name


@pytest.mark.parametrize('number', [NUMBER, 1], ids=['shipped', 'config1'])
def test_the_shipped_model_and_a_coco_config_export_in_both_formats_as_their_check_passes(number, pytestconfig,
                                                                                           tmp_path, capsys):
    """What a user runs first, on either Paddle line (CI runs it on 2.6 too): ``tools/export_model.py``
    in both formats with its own check, on the shipped model and on config 1 (random weights: a COCO
    config, 80 classes, full grids). Each engine's line is printed, the regions graph's on the input
    padded further among them, so a regions graph that does not trace, or does not keep a padded
    picture's own answer, fails the command."""
    weights = SHIPPED_WEIGHTS if number == NUMBER else _checkpoint(pytestconfig, tmp_path, 0.0, number=number)
    assert export_model.main(['--weights', weights, '--output', str(tmp_path / 'export')]) == 0
    checked = [line.split(':')[0] + (' regions' if 'with its regions' in line else '')
               for line in capsys.readouterr().out.splitlines() if 'max abs diff vs dygraph' in line]
    assert checked == ['inference', 'onnx', 'onnx regions']


@pytest.mark.parametrize('dcn', ['v1', 'v2'])
def test_deformable_conv_exports_to_onnx(dcn, tmp_path, capsys):
    """Deformable convs (DCNv1 without mask, DCNv2 with one) in the head towers and the
    mask-feature head of config 9 become ONNX DeformConv (opset 19) and run in
    onnxruntime. (ResNet-50/101 backbone DCN, configs 2/3/4/7, is the same op.)"""
    opts = [f'head_dcn={dcn!r}', 'head_dcn_indices=(1,)', 'mask_feat_dcn=True', 'dcn_bias=True']
    cfg = with_overrides(CONFIGS[NUMBER], opts)
    paddle.seed(3)
    model = build_model(cfg)
    model.eval()
    weights = str(tmp_path / 'dcn.pdparams')
    save_checkpoint({k: v.numpy() for k, v in model.state_dict().items()}, weights, NUMBER,
                    cfg, 'random')
    out = tmp_path / 'export'
    if dcn_export_refused(export_model.main(['--weights', weights, '--output', str(out), '--format', 'onnx',
                                             '--no-verify', '--opt', *opts]), capsys):
        return
    graph = onnx.load(str(out / 'model.onnx'))
    # tower conv 1 of both towers on 5 levels + all 8 mask-feature convs (1+1+2+3 + pred)
    assert sum(n.op_type == 'DeformConv' for n in graph.graph.node) == 5 * 2 + 8
    assert json.loads((out / 'infer_cfg.json').read_text())['files']['onnx']['opset'] >= 19
    batch = _batch(*SIZES[1], seed=5)
    got = OnnxBackend(str(out), threads=1).run_numpy(batch)
    want = [t.numpy() for t in ExportableSOLOv2(model)(paddle.to_tensor(batch))]
    diffs = compare_outputs(got, want)
    assert max(diffs['scores'], diffs['kernels'], diffs['mask_feat']) <= OUTPUT_TOL, diffs


@pytest.mark.parametrize('opts', [['score_threshold=0.999'], ['update_threshold=1.0']],
                         ids=['no-candidates', 'all-decayed'])
def test_zero_detections_in_every_backend(hot, opts):
    """Nothing passes the score threshold, or everything falls below update_threshold
    after Matrix NMS: every backend returns an empty result of the right shape."""
    weights, out = hot
    backends = [DygraphBackend(with_overrides(CONFIGS[NUMBER], opts), weights, 'cpu'),
                InferenceBackend(str(out), threads=1, overrides=opts),
                OnnxBackend(str(out), threads=1, overrides=opts)]
    batch = _batch(*SIZES[0], seed=1)
    for backend in backends:
        det = soft_detections(backend, batch[0])
        assert len(det) == 0 and det.masks.shape == (0, SIZES[0][0] // 4, SIZES[0][1] // 4), backend.name
        assert det.labels.dtype == np.int64 and det.scores.dtype == np.float32


def test_exported_backend_rejects_sizes_out_of_range(hot):
    backend = OnnxBackend(str(hot[1]), threads=1)
    with pytest.raises(ValueError, match='multiple of 32'):
        backend.batch_regions([np.zeros((3, 64, 80), np.float32)])
    with pytest.raises(ValueError, match='outside'):
        backend.batch_regions([np.zeros((3, 32, 64), np.float32)])


def test_export_errors_are_one_line(hot, tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:           # the flag checked where it is parsed
        export_model.main(['--weights', hot[0], '--output', str(tmp_path / 'x'), '--min-size', '100'])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and 'argument --min-size: ' in err and 'Traceback' not in err
    code = export_model.main(['--weights', hot[0], '--output', str(tmp_path / 'x'), '--min-size', '128',
                              '--max-size', '96'])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'max_size=96' in err and 'Traceback' not in err
    code = export_model.main(['--weights', str(tmp_path / 'none.pdparams'), '--output', str(tmp_path / 'x')])
    assert code == 2


def test_a_failed_onnx_conversion_is_one_error_and_a_stopped_one_ends(tmp_path):
    from solov2.model.inference.export import ExportError, OnnxConversion
    (tmp_path / 'model.json').write_text('{"not": "a Paddle program"}')
    (tmp_path / 'model.pdiparams').write_bytes(b'')
    failing = OnnxConversion(str(tmp_path / 'model.json'), str(tmp_path / 'model.onnx'), 17, str(tmp_path / 'log'))
    with pytest.raises(ExportError, match=r'^paddle2onnx could not convert the model \(exit -?\d+\): \S') as error:
        failing.wait()
    assert '\x1b' not in str(error.value) and '\n' not in str(error.value)
    assert 'fail' in str(error.value).lower()           # paddle2onnx's own words (1.3.1 exits 0, its file empty)
    stopped = OnnxConversion(str(tmp_path / 'model.json'), str(tmp_path / 'stopped.onnx'), 17, str(tmp_path / 'log2'))
    stopped.stop()
    assert stopped.child.returncode is not None


P2O_2X = ('import json\n'
          'def export(model_file, params_file, save_file, optimize_tool="polygraphy", **options):\n'
          '    json.dump({"optimize_tool": optimize_tool, **options}, open(save_file, "w"))\n')
P2O_1X = ('import json\n'
          'def export(model_file, params_file, save_file, **options):\n'
          '    json.dump(options, open(save_file, "w"))\n')


@pytest.mark.parametrize('stand_in, folding', [(P2O_2X, 'None'), (P2O_1X, None)], ids=['2.x', '1.x'])
def test_the_conversion_skips_polygraphys_constant_folding_where_paddle2onnx_has_it(tmp_path, monkeypatch, stand_in,
                                                                                    folding):
    """paddle2onnx 2.x's default Polygraphy folding took 4-7 s a conversion for the same outputs and speed:
    the child asks for none (optimize_tool='None'); 1.x has no such parameter and is not given it. A
    stand-in paddle2onnx first on the child's path writes what it was given."""
    from solov2.model.inference.export import OnnxConversion
    (tmp_path / 'paddle2onnx').mkdir()
    (tmp_path / 'paddle2onnx' / '__init__.py').write_text(stand_in)
    monkeypatch.setenv('PYTHONPATH', f'{tmp_path}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
    OnnxConversion(str(tmp_path / 'model.json'), str(tmp_path / 'model.onnx'), 17, str(tmp_path / 'log')).wait()
    given = json.loads((tmp_path / 'model.onnx').read_text())
    assert given.pop('optimize_tool', None) == folding
    assert given == {'opset_version': 17, 'auto_upgrade_opset': True, 'enable_onnx_checker': True}


# ---- demo.py ----------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def image_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp('images')
    for seed, (name, height, width) in enumerate(IMAGES):
        rng = np.random.RandomState(seed)
        image = np.full((height, width, 3), rng.randint(0, 255, 3), np.uint8)
        cv2.rectangle(image, (5, 8), (width // 2, height // 2), (255, 40, 40), -1)
        cv2.circle(image, (width * 2 // 3, height * 2 // 3), min(height, width) // 5, (30, 200, 60), -1)
        assert cv2.imwrite(str(folder / name), image)
    return folder


def _demo(args, capsys) -> str:
    capsys.readouterr()
    code = demo.main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def _assert_same_records(records, reference):
    assert records and len(records) == len(reference)
    for got, want in zip(records, reference):
        assert (got['image_id'], got['file_name'], got['category_id']) == \
            (want['image_id'], want['file_name'], want['category_id'])
        assert abs(got['score'] - want['score']) <= SCORE_TOL
        masks = [mask_util.decode({'size': r['segmentation']['size'],
                                   'counts': r['segmentation']['counts'].encode('ascii')})
                 for r in (got, want)]
        assert _iou(*(m.astype(bool) for m in masks)) >= MIN_MASK_IOU


@pytest.fixture(scope='module')
def dygraph_json(hot, image_dir, tmp_path_factory) -> list:
    folder = tmp_path_factory.mktemp('demo_dygraph')
    assert demo.main(['--backend', 'dygraph', '--weights', hot[0], '--input', str(image_dir),
                      '--output', str(folder / 'pics'),
                      '--save-json', str(folder / 'dets.json'), *DEMO_OPTS]) == 0
    return json.loads((folder / 'dets.json').read_text())


@pytest.mark.filterwarnings('ignore::DeprecationWarning')   # pycocotools decode on numpy 2
@pytest.mark.parametrize('backend', ['onnx', 'inference'])
def test_demo_exported_backend_writes_the_dygraph_json(backend, hot, image_dir, dygraph_json,
                                                        tmp_path, capsys):
    out = _demo(['--backend', backend, '--model-dir', str(hot[1]), '--input', str(image_dir),
                 '--output', str(tmp_path / 'pics'), '--save-json', str(tmp_path / 'dets.json'),
                 *DEMO_OPTS], capsys)
    assert f'config {NUMBER}: {CONFIGS[NUMBER].__name__} ({backend} backend' in out
    _assert_same_records(json.loads((tmp_path / 'dets.json').read_text()), dygraph_json)
    assert sorted(p.name for p in (tmp_path / 'pics').iterdir()) == ['a_wide.jpg', 'b_tall.jpg']


def test_demo_exported_backend_needs_model_dir(tmp_path, image_dir, capsys):
    code = demo.main(['--backend', 'onnx', '--input', str(image_dir), '--output', str(tmp_path / 'o')])
    assert code == 2
    assert 'model_dir=' in capsys.readouterr().err
    code = demo.main(['--backend', 'onnx', '--model-dir', str(tmp_path), '--input', str(image_dir)])
    assert code == 2
    assert 'infer_cfg.json' in capsys.readouterr().err


def _frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


@pytest.fixture(scope='module')
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('video') / 'clip.mp4'
    height, width = VIDEO_HW
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 10, (width, height))
    for t in range(VIDEO_FRAMES):
        frame = np.full((height, width, 3), 90, np.uint8)
        cv2.circle(frame, (16 + 10 * t, height // 2), 14, (0, 200, 0), -1)
        writer.write(frame)
    writer.release()
    assert _frame_count(path) == VIDEO_FRAMES
    return path


def test_video_input_writes_every_frame(hot, video, tmp_path, capsys):
    out_path = tmp_path / 'annotated.mp4'
    out = _demo(['--backend', 'onnx', '--model-dir', str(hot[1]), '--video', str(video),
                 '--output', str(out_path), '--save-json', str(tmp_path / 'v.json'), *DEMO_OPTS], capsys)
    assert f'{VIDEO_FRAMES} frames' in out
    assert _frame_count(out_path) == VIDEO_FRAMES
    picture = cv2.VideoCapture(str(out_path)).read()[1]
    assert picture.shape[:2] == VIDEO_HW
    records = json.loads((tmp_path / 'v.json').read_text())
    assert {r['image_id'] for r in records} == set(range(VIDEO_FRAMES))
    # --max-frames, output into a folder
    _demo(['--backend', 'dygraph', '--weights', hot[0], '--video', str(video), '--output', str(tmp_path / 'folder'),
           '--max-frames', '2', *DEMO_OPTS], capsys)
    assert _frame_count(tmp_path / 'folder' / 'clip.mp4') == 2


@pytest.mark.filterwarnings('ignore::DeprecationWarning')
def test_dump_inputs_and_postprocess_raw_reproduce_the_demo(hot, image_dir, tmp_path, capsys):
    dump, raw = tmp_path / 'dump', tmp_path / 'raw'
    _demo(['--backend', 'onnx', '--model-dir', str(hot[1]), '--input', str(image_dir),
           '--output', str(tmp_path / 'pics'), '--save-json', str(tmp_path / 'demo.json'),
           '--dump-inputs', str(dump), *DEMO_OPTS], capsys)
    manifest = json.loads((dump / 'manifest.json').read_text())
    assert [e['file_name'] for e in manifest['images']] == [name for name, _, _ in IMAGES]
    for entry in manifest['images']:      # portable: relative to the manifest, no path of this machine
        assert not Path(entry['source']).is_absolute()
        assert (dump / entry['source']).resolve() == (Path(image_dir) / entry['file_name']).resolve()
    # a "vendor runtime": onnxruntime on the raw .bin files
    runtime = OnnxBackend(str(hot[1]), threads=1)
    raw.mkdir()
    for entry in manifest['images']:
        batch = np.fromfile(dump / entry['bin'], np.float32).reshape(entry['input_shape'])
        np.testing.assert_array_equal(batch, np.load(dump / entry['npy']))
        assert entry['input_shape'] == [1, 3, *entry['padded_hw']]
        for name, array in zip(('scores', 'kernels', 'mask_feat'), runtime.run(batch)):
            np.save(raw / f'{entry["name"]}.{name}.npy', array)
    capsys.readouterr()
    assert postprocess_raw.main(['--manifest', str(dump / 'manifest.json'), '--raw', str(raw),
                                 '--output', str(tmp_path / 'raw_pics'),
                                 '--save-json', str(tmp_path / 'raw.json')]) == 0
    _assert_same_records(json.loads((tmp_path / 'raw.json').read_text()),
                         json.loads((tmp_path / 'demo.json').read_text()))
    assert sorted(p.name for p in (tmp_path / 'raw_pics').iterdir()) == ['a_wide.jpg', 'b_tall.jpg']
    for name in ('a_wide.jpg', 'b_tall.jpg'):
        assert cv2.imread(str(tmp_path / 'raw_pics' / name)).shape == \
            cv2.imread(str(tmp_path / 'pics' / name)).shape


def test_the_size_limit_follows_the_long_side_cap(tmp_path):
    """The keep-ratio resize caps the long side at test_max, so a large test_short fits any
    export that takes test_max (it was refused: 'test_short=3200 gives inputs above ...');
    a test_max beyond --max-size is refused with the size it gives."""
    from solov2.model.inference.export import ExportError, export
    weights = str(REPO_DIR / 'weights' / 'shapes_r18.pdparams')
    big_short = with_overrides(CONFIGS[9], ['test_short=3200'])
    lines = export(DygraphBackend(big_short, weights, 'cpu'), 9, tmp_path / 'short', fmt='paddle', check=False,
                   max_size=704)
    assert (tmp_path / 'short' / 'infer_cfg.json').is_file() and lines
    with pytest.raises(ExportError, match=r'test_max=1400 gives inputs up to 1408 px, above .* \(max_size=1344\)'):
        export(DygraphBackend(with_overrides(CONFIGS[9], ['test_max=1400']), weights, 'cpu'), 9, tmp_path / 'long',
               fmt='paddle')
