"""This project's checkpoint (trained or converted) -> PaddleDetection 2.x ``.pdparams``.

The way back of convert/ppdet2paddle.py, through the same rename table: config 0 ->
solov2_r50_fpn_1x_coco / solov2_r50_fpn_3x_coco, 3 -> solov2_r50_enhance_coco,
4 -> solov2_r101_vd_fpn_3x_coco. The other configs have no PaddleDetection 2.x SOLOv2
config and are refused. The config comes from the checkpoint's sidecar (NAME.json) or
``--config``. Usage:
    python convert/paddle2ppdet.py output/0/best/model.pdparams solov2_r50_fpn_3x_coco.pdparams
"""
import argparse
from pathlib import Path
from typing import Dict, Optional, Sequence

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

import numpy as np
import paddle

from config import CONFIGS
from config.sidecar import MODEL_SETTINGS, apply_sidecar, read_sidecar, recorded_settings
from convert.common import model_shapes
from convert.ppdet2paddle import ALIAS_PREFIXES, ppdet_name
from data.files import check_output_file, make_folder, write_together
from model.checkpoint import load_paddle_params
from tools.cli import run_command

PPDET_CONFIGS = {0: 'solov2_r50_fpn_1x_coco or solov2_r50_fpn_3x_coco', 3: 'solov2_r50_enhance_coco',
                 4: 'solov2_r101_vd_fpn_3x_coco'}


def to_ppdet(state: Dict[str, np.ndarray], cfg) -> Dict[str, np.ndarray]:
    """Our {name: array} -> PaddleDetection's {name: float32 array}, with the duplicate
    keys PaddleDetection's own state_dict holds; ValueError when ``state`` does not
    hold exactly the parameters of ``cfg`` (names and shapes)."""
    shapes = model_shapes(cfg)
    missing = sorted(set(shapes) - set(state))
    extra = sorted(set(state) - set(shapes))
    wrong = [k for k in shapes if k in state and tuple(state[k].shape) != tuple(shapes[k])]
    if missing or extra or wrong:
        example = (missing or extra or wrong)[0]
        raise ValueError(f'the weights do not fit config {cfg.__name__}: {len(missing)} missing, '
                              f'{len(extra)} unexpected, {len(wrong)} of another shape (e.g. {example})')
    keys = frozenset(shapes)
    out = {ppdet_name(k, keys, cfg): np.ascontiguousarray(state[k], dtype=np.float32) for k in shapes}
    for key in list(out):
        for dup, primary in ALIAS_PREFIXES:
            if key.startswith(primary):
                out[dup + key[len(primary):]] = out[key]
    return out


def resolve_config(weights: str, number: Optional[int]):
    """(config number, config class with what the sidecar recorded: classes and settings)
    from ``--config`` or the sidecar; ValueError for a config without a PaddleDetection 2.x
    counterpart."""
    meta = read_sidecar(weights)
    if number is None and meta is not None:
        number = meta.get('config')
    if number is None:
        raise ValueError(f'{weights} has no sidecar naming its config — give --config N')
    if number not in PPDET_CONFIGS:
        name = CONFIGS[number].__name__ if number in CONFIGS else 'unknown'
        raise ValueError(f'config {number} ({name}) has no PaddleDetection 2.x SOLOv2 config — only '
                         f'configs {sorted(PPDET_CONFIGS)} map to one; deploy it with tools/export_model.py instead')
    return number, CONFIGS[number] if meta is None else apply_sidecar(CONFIGS[number], meta)


def model_changes(cfg, number: int) -> Dict[str, object]:
    """The network settings (classes aside) in which ``cfg`` differs from config
    ``number``: PaddleDetection's config needs them too."""
    return {k: v for k, v in recorded_settings(cfg, number).items() if k in MODEL_SETTINGS}


def write_pdparams(params: Dict[str, np.ndarray], output: str) -> None:
    """``paddle.save`` of numpy arrays, written atomically (``data.files.write_together``:
    straight to a temporary beside ``output``, no in-memory copy of the file)."""
    write_together([(Path(output), lambda path: paddle.save(params, path))])


def run(argv: Optional[Sequence[str]] = None) -> int:
    """The command: parse, check the output path, convert, write."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('source', help="this project's .pdparams (its NAME.json names the config)")
    parser.add_argument('output', help='PaddleDetection .pdparams to write')
    parser.add_argument('--config', type=int, default=None, help='config number when there is no sidecar')
    args = parser.parse_args(argv)
    output = check_output_file(args.output, [args.source])
    number, cfg = resolve_config(args.source, args.config)
    params = to_ppdet(load_paddle_params(args.source), cfg)
    make_folder(output.parent)
    write_pdparams(params, str(output))
    print(f'config {number} ({cfg.__name__}) -> PaddleDetection {PPDET_CONFIGS[number]} '
          f'(num_classes: {cfg.num_classes}): {len(params)} tensors')
    for name, value in model_changes(cfg, number).items():
        print(f'note: trained with {name}={value!r}: set it in the PaddleDetection config too')
    print(f'wrote {args.output}')
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``run`` with errors and Ctrl-C ending in one line (``tools.cli.run_command``)."""
    return run_command(run, argv)


if __name__ == '__main__':
    raise SystemExit(main())
