"""demo.py's outputs (tools/demo_outputs.py): the manifest of ``--dump-inputs`` in input order."""
import json
from types import SimpleNamespace

import numpy as np

from solov2.config import CONFIGS
from solov2.data.transforms import ImageMeta
from solov2.model.inference.postprocess import InferenceParams
from solov2.tools.demo_outputs import InputDumper


def test_the_dump_manifest_is_in_input_order_whatever_order_the_inputs_finished_in(tmp_path):
    """The finishing threads dump each input as it finishes (here the third first): the manifest lists
    them, and names its example output file, by input order, so it is the same on every run."""
    cfg = CONFIGS[9]
    dumper = InputDumper(str(tmp_path / 'dump'), SimpleNamespace(cfg=cfg, params=InferenceParams.from_config(cfg)), 9)
    for index in (2, 0, 1):
        prepared = SimpleNamespace(chw=np.full((3, 32, 32), index, np.float32),
                                   meta=ImageMeta((30, 30), (32, 32), (32, 32)))
        dumper.dump(f'{index:05d}_p{index}', index, f'p{index}.jpg', tmp_path / f'p{index}.jpg', prepared)
    manifest = json.loads(dumper.close().read_text())
    assert [entry['image_id'] for entry in manifest['images']] == [0, 1, 2]
    assert manifest['output_files'] == '{name}.{output}.npy, e.g. 00000_p0.scores.npy'
    assert [entry['name'] for entry in dumper.entries] == ['00000_p0', '00001_p1', '00002_p2']
