"""Export a checkpoint for deployment (``tools/export_model.py``): a Paddle Inference model and/or
ONNX of ``export_network.ExportableSOLOv2``, plus ``infer_cfg.json`` (what a runtime needs besides
the graph), then a check of each format against the dygraph model.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import paddle

from solov2.config.install import NO_PADDLE2ONNX, paddle_major
from solov2.core.errors import InputError, param
from solov2.data.transforms import padded_size
from solov2.model.inference.backend import BackendError
from solov2.model.inference.dygraph_backend import DygraphBackend
from solov2.model.inference.export_network import (
    INPUT_NAME,
    MIN_SIZE,
    OUTPUT_NAMES,
    OUTPUTS,
    REGIONS_NAME,
    SIZE_DIVISOR,
    input_description,
    save_inference_model,
)
from solov2.model.inference.exported_folder import INFER_CFG, ONNX_FILE, PADDLE_PREFIX, REGIONS_ONNX_FILE
from solov2.model.inference.postprocess import InferenceParams
from solov2.model.inference.spec import ModelSpec, exported_backend
from solov2.model.layers import DeformConv

DEFAULT_MAX_SIZE = 1344        # 1333 (the largest test_max of the configs) padded to 32
DCN_OPSET = 19                 # ONNX DeformConv
VERIFY_TOLERANCE = 1e-3        # kernels / mask features, exported vs dygraph
VERIFY_HW = (MIN_SIZE + 32, MIN_SIZE)
NORMS = ('InstanceNormalization', 'GroupNormalization')     # the nodes whose epsilon fix_onnx sets


class ExportError(InputError):
    """The model could not be exported; the message says what and why."""


def check_onnx_tools(deformable: bool) -> str:
    """paddle2onnx's version, or ExportError when it is missing, does not fit this
    Paddle, or cannot write what the model needs."""
    try:
        from importlib.metadata import PackageNotFoundError, version
        p2o = version('paddle2onnx')
        version('onnx')
    except PackageNotFoundError:
        if sys.version_info >= NO_PADDLE2ONNX:        # the deployment extras leave it out there (no wheel)
            raise ExportError(f'ONNX export needs paddle2onnx, which has no wheel for Python '
                              f'{sys.version_info[0]}.{sys.version_info[1]}: export with Python 3.12 or older (the '
                              'exported folder runs here), or ', param('fmt', 'paddle'))
        raise ExportError('ONNX export needs paddle2onnx and onnx: pip install -r requirements-deploy.txt '
                          '(on Paddle 2.6: requirements-deploy-paddle26.txt)')
    major = int(p2o.split('.')[0])
    if paddle_major() >= 3 and major < 2:
        raise ExportError(f'paddle2onnx {p2o} reads Paddle 2.x models only; with Paddle '
                          f'{paddle.__version__} install paddle2onnx>=2.0 (requirements-deploy.txt)')
    if paddle_major() < 3 and major >= 2:
        raise ExportError(f'paddle2onnx {p2o} needs Paddle >= 3.0; with Paddle {paddle.__version__} '
                          'install paddle2onnx==1.3.1 (requirements-deploy-paddle26.txt, the deploy-paddle26 extra)')
    if deformable and major < 2:
        raise ExportError(f'cannot export deformable convolution (DCN) to ONNX with paddle2onnx {p2o}: '
                          f'the ONNX DeformConv op needs opset {DCN_OPSET}, which paddle2onnx 1.x '
                          'cannot write (it aborts). Use Paddle >= 3.0 with paddle2onnx >= 2.0, or ',
                          param('fmt', 'paddle'))
    return p2o


_CONVERT = """import inspect, sys
import paddle2onnx
model_file, onnx_path = sys.argv[2:]
unfolded = {'optimize_tool': 'None'} if 'optimize_tool' in inspect.signature(paddle2onnx.export).parameters else {}
paddle2onnx.export(model_file, model_file.rsplit('.', 1)[0] + '.pdiparams', onnx_path,
                   opset_version=int(sys.argv[1]), auto_upgrade_opset=True, enable_onnx_checker=True, **unfolded)
"""


class OnnxConversion:
    """paddle2onnx converting a Paddle model file (its params beside it, .pdiparams) to ``onnx_path``
    in a child process started at once (on failure paddle2onnx may exit or abort its process, and C++
    code prints its messages, kept in ``log_path``); ``wait`` ends it. Two run side by side. The child
    (``_CONVERT``) passes optimize_tool='None' where paddle2onnx takes it: 2.x folds constants with
    Polygraphy by default, 4-7 s a conversion, for the same outputs and speed (onnxruntime and OpenVINO
    fold them when they load the model)."""

    def __init__(self, model_file: str, onnx_path: str, opset: int, log_path: str):
        self.onnx_path, self.log_path = onnx_path, log_path
        with open(log_path, 'w') as log:
            self.child = subprocess.Popen([sys.executable, '-c', _CONVERT, str(opset), model_file, onnx_path],
                                          stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait(self) -> None:
        """Block until the child ends; ExportError with paddle2onnx's error lines unless it wrote ``onnx_path``
        (not empty)."""
        code = self.child.wait()
        if code == 0 and os.path.isfile(self.onnx_path) and os.path.getsize(self.onnx_path):
            return                 # (paddle2onnx 1.3.1 that fails exits 0, leaving an empty file)
        text = re.sub(r'\x1b\[[0-9;]*m', '', Path(self.log_path).read_text(errors='replace'))   # no colours
        lines = [line.strip() for line in text.splitlines()]
        errors = [line for line in lines if 'ERROR' in line or 'Error' in line
                  or any(word in line.lower() for word in ('not supported', 'aborted', 'failed'))]
        detail = '; '.join(dict.fromkeys(errors)) or (lines[-1] if lines else 'no message')
        raise ExportError(f'paddle2onnx could not convert the model (exit {code}): {detail}')

    def stop(self) -> None:
        """End the child now if it still runs (its work is not wanted)."""
        if self.child.poll() is None:
            self.child.kill()
            self.child.wait()


def fix_onnx(onnx_path: str, gn_epsilon: float, inputs: Sequence[str]) -> Dict[str, object]:
    """Set every GroupNorm / InstanceNormalization epsilon to ``gn_epsilon``
    (paddle2onnx writes garbage there), name the outputs ``scores``, ``kernels``,
    ``mask_feat``, check that the graph's inputs are named ``inputs`` and save. Returns
    {'opset', 'norm_nodes', 'epsilons'} read back from the saved file."""
    import onnx
    model = onnx.load(onnx_path)
    graph = model.graph
    if len(graph.output) != len(OUTPUT_NAMES):
        raise ExportError(f'the ONNX graph has {len(graph.output)} outputs, expected {len(OUTPUT_NAMES)}')
    renames = {output.name: name for output, name in zip(graph.output, OUTPUT_NAMES)}
    for output, name in zip(graph.output, OUTPUT_NAMES):
        output.name = name
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
        if node.op_type in NORMS:
            others = [attribute for attribute in node.attribute if attribute.name != 'epsilon']
            del node.attribute[:]
            node.attribute.extend(others + [onnx.helper.make_attribute('epsilon', gn_epsilon)])
    if [value.name for value in graph.input] != list(inputs):
        raise ExportError(f'unexpected ONNX inputs {[i.name for i in graph.input]}')
    onnx.checker.check_model(model)
    onnx.save(model, onnx_path)
    saved = onnx.load(onnx_path)
    norms = [node for node in saved.graph.node if node.op_type in NORMS]
    return {'opset': max(o.version for o in saved.opset_import if o.domain in ('', 'ai.onnx')),
            'norm_nodes': len(norms), 'epsilons': sorted({a.f for n in norms for a in n.attribute
                                                          if a.name == 'epsilon'})}


def write_onnx(dygraph: DygraphBackend, model_file: str, out_dir: Path, tmp: str, opset: int,
               p2o: str) -> Tuple[dict, List[str]]:
    """``ONNX_FILE`` from the Paddle model ``model_file`` (input ``image``) and ``REGIONS_ONNX_FILE``
    from the network traced again with the ``regions`` input into ``tmp`` (size buckets, quantizing),
    each through paddle2onnx and ``fix_onnx``: (infer_cfg.json's 'onnx' files, the lines to print)."""
    epsilon = group_norm_epsilon(dygraph.model)
    conversions = [OnnxConversion(model_file, str(out_dir / ONNX_FILE), opset, str(Path(tmp) / 'onnx.log'))]
    try:                           # the regions network is traced while the plain one converts
        with dygraph.placed():
            regions_file = save_inference_model(dygraph.model, str(Path(tmp) / 'regions'), regions=True)
        conversions.append(OnnxConversion(regions_file, str(out_dir / REGIONS_ONNX_FILE), opset,
                                          str(Path(tmp) / 'regions_onnx.log')))
        for conversion in conversions:
            conversion.wait()
    finally:
        for conversion in conversions:
            conversion.stop()
    lines = []
    for name, inputs in ((ONNX_FILE, [INPUT_NAME]), (REGIONS_ONNX_FILE, [INPUT_NAME, REGIONS_NAME])):
        path = str(out_dir / name)
        info = fix_onnx(path, epsilon, inputs)
        if info['norm_nodes'] and info['epsilons'] != [np.float32(epsilon)]:
            raise ExportError(f'GroupNorm epsilons in {path} are {info["epsilons"]} after the fix')
        lines.append(f'ONNX model: {path} (inputs {", ".join(inputs)}; opset {info["opset"]}, paddle2onnx {p2o}, '
                     f'{info["norm_nodes"]} GroupNorm nodes, epsilon set to {epsilon:g})')
    return {'model': ONNX_FILE, 'regions_model': REGIONS_ONNX_FILE, 'opset': info['opset'], 'paddle2onnx': p2o,
            'group_norm_epsilon': epsilon}, lines


def group_norm_epsilon(model: paddle.nn.Layer) -> float:
    """The one epsilon of every GroupNorm in the model (ExportError if they differ)."""
    values = {float(layer._epsilon) for layer in model.sublayers()
              if isinstance(layer, paddle.nn.GroupNorm)}
    if len(values) > 1:
        raise ExportError(f'GroupNorm layers use different epsilons {sorted(values)}; the ONNX '
                          'fix-up assumes one')
    return values.pop() if values else 1e-5


def infer_cfg(number: int, cfg, min_size: int, max_size: int, files: Dict[str, object]) -> dict:
    """Everything a runtime needs besides the graph: sizes, normalisation, classes,
    post-processing thresholds, output layout."""
    params = InferenceParams.from_config(cfg)
    return {'config': number, 'config_name': cfg.__name__, 'num_classes': cfg.num_classes,
            'class_names': list(cfg.class_names), 'test_short': cfg.test_short, 'test_max': cfg.test_max,
            'input': {**input_description(), 'min_size': min_size, 'max_size': max_size},
            'outputs': [dict(output) for output in OUTPUTS], 'num_cells': sum(s * s for s in params.num_grids),
            'postprocess': params.to_json(), 'files': files, 'paddle_version': paddle.__version__}


def compare_outputs(got: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> Dict[str, float]:
    """Max abs differences of (scores, kernels, mask_feat); scores on the cells both runs keep (a 1-ulp
    tie flips a cell of points-NMS, often with random weights: counted in ``flipped``)."""
    scores, ref = got[0], expected[0]
    both = (scores > 0) & (ref > 0)
    return {'scores': float(np.abs(scores - ref)[both].max(initial=0.0)),
            'kernels': float(np.abs(got[1] - expected[1]).max()),
            'mask_feat': float(np.abs(got[2] - expected[2]).max()),
            'flipped': int(((scores > 0) != (ref > 0)).sum())}


def verify(dygraph: DygraphBackend, backends: Sequence, seed: int = 0) -> List[str]:
    """Run each exported backend and the dygraph model on one random input [1, 3, VERIFY_HW] and, on a
    backend that mixes sizes, that input padded by 32 a side (a parity change of each side: P6's rows
    and columns) with its own size as ``regions``; raise ExportError when kernels or mask features
    differ by more than VERIFY_TOLERANCE."""
    batch = np.random.RandomState(seed).standard_normal((1, 3, *VERIFY_HW)).astype(np.float32)
    padded = np.pad(batch, ((0, 0), (0, 0), (0, SIZE_DIVISOR), (0, SIZE_DIVISOR)))
    padded_run = (f' padded to {padded.shape[2]}x{padded.shape[3]} with its regions', padded,
                  np.array([VERIFY_HW], np.int64))
    expected = dygraph.run_numpy(batch)
    lines = []
    for backend in backends:
        for padding, inputs, regions in [('', batch, None)] + [padded_run] * backend.mixes_sizes:
            diffs = compare_outputs(backend.run_numpy(inputs, regions), expected)
            lines.append(f'{backend.name}: max abs diff vs dygraph on a random {VERIFY_HW[0]}x{VERIFY_HW[1]} '
                         f'input{padding}: scores {diffs["scores"]:.1e} ({diffs["flipped"]} of '
                         f'{expected[0].size} cells flipped by points-NMS ties), kernels {diffs["kernels"]:.1e}, '
                         f'mask_feat {diffs["mask_feat"]:.1e}')
            if max(diffs['kernels'], diffs['mask_feat']) > VERIFY_TOLERANCE:
                raise ExportError(f'the {backend.name} export does not reproduce the model: {lines[-1]}')
    return lines


EXPORT_FORMATS = ('both', 'paddle', 'onnx')      # what ``export`` writes: both engines' files, or one


def export(dygraph: DygraphBackend, number: int, out_dir: Path, fmt: str = 'both', opset: int = 17,
           min_size: int = MIN_SIZE, max_size: int = DEFAULT_MAX_SIZE, check: bool = True) -> List[str]:
    """Write the export of ``dygraph`` (the model of config ``number``, opened from its ``ModelSpec``
    by ``spec.dygraph_backend`` on the CPU) into ``out_dir``; returns the lines to print. With ``check``,
    the folder's engines, opened from it as any caller opens them (``spec.exported_backend``, the
    model's threads), must reproduce the model (``verify``); ``fmt``: one of ``EXPORT_FORMATS``. Raises ExportError."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(param('fmt', fmt), f" is not an export format: use {', '.join(EXPORT_FORMATS)}")
    for name, value in (('min_size', min_size), ('max_size', max_size)):
        if value % SIZE_DIVISOR or value < MIN_SIZE:
            raise ExportError(param(name, value), f' must be a multiple of {SIZE_DIVISOR} and >= {MIN_SIZE}')
    if max_size < min_size:
        raise ExportError(param('max_size', max_size), ' is below ', param('min_size', min_size))
    cfg, model = dygraph.cfg, dygraph.model
    deformable = any(isinstance(layer, DeformConv) for layer in model.sublayers())
    p2o = check_onnx_tools(deformable) if fmt in ('onnx', 'both') else None
    largest = padded_size(cfg.test_max, SIZE_DIVISOR)    # the keep-ratio resize caps the long side at test_max
    if largest > max_size:
        raise ExportError(f'test_max={cfg.test_max} gives inputs up to {largest} px, above the largest the export '
                          'takes (', param('max_size', max_size), ')')
    out_dir.mkdir(parents=True, exist_ok=True)
    lines, files = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        prefix = str((out_dir if fmt != 'onnx' else Path(tmp)) / PADDLE_PREFIX)
        with dygraph.placed():
            model_file = save_inference_model(model, prefix)
        if fmt != 'onnx':
            files['paddle'] = {'model': Path(model_file).name, 'params': PADDLE_PREFIX + '.pdiparams'}
            lines.append(f'Paddle Inference model: {model_file} + {prefix}.pdiparams')
        if fmt != 'paddle':
            wanted = max(opset, DCN_OPSET) if deformable else opset
            if wanted != opset:
                lines.append(f'deformable convolution: ONNX opset {wanted} (DeformConv) instead of {opset}')
            files['onnx'], written = write_onnx(dygraph, model_file, out_dir, tmp, wanted, p2o)
            lines.extend(written)
    cfg_path = out_dir / INFER_CFG
    cfg_path.write_text(json.dumps(infer_cfg(number, cfg, min_size, max_size, files), indent=2) + '\n')
    lines.append(f'runtime settings: {cfg_path}')
    if check:
        backends, kinds = [], ['inference'] * ('paddle' in files) + ['onnx'] * ('onnx' in files)
        for kind in kinds:
            try:
                backends.append(exported_backend(ModelSpec(backend=kind, model_dir=str(out_dir),
                                                           threads=dygraph.placement.threads)))
            except BackendError as exc:
                if kind != 'onnx':          # onnxruntime may be missing: the Paddle folder is still written
                    raise
                lines.append(f'ONNX model not verified: {exc}')
        lines.extend(verify(dygraph, backends))
    return lines
