"""What a conversion returns is what it wrote, typed (``convert_file``'s ``Converted``, ``write_ppdet``'s
``WrittenPpdet``); the command (tools/convert.py) prints its lines from that."""
import numpy as np

from solov2.config import CONFIGS
from solov2.convert.common import Converted, convert_file
from solov2.convert.families import CONVERTERS
from solov2.convert.to_ppdet import WrittenPpdet, write_ppdet
from solov2.model.build import model_shapes
from solov2.model.checkpoint import save_checkpoint
from solov2.tools.convert import run_family


def test_a_conversion_returns_what_it_wrote_and_the_command_prints_it(tmp_path, capsys):
    """This project's weights (config 0, zeros) to PaddleDetection's and back: each library call returns
    its typed result, each command prints the lines made from it."""
    ours, theirs, again = (str(tmp_path / f'{name}.pdparams') for name in ('ours', 'theirs', 'again'))
    shapes = model_shapes(CONFIGS[0])
    save_checkpoint({key: np.zeros(shape, np.float32) for key, shape in shapes.items()}, ours, 0, CONFIGS[0],
                    source='zeros')
    written = write_ppdet(ours, theirs)
    assert isinstance(written, WrittenPpdet) and (written.number, written.output) == (0, theirs)
    assert written.cfg.__name__ == CONFIGS[0].__name__ and written.tensors >= len(shapes) and written.changed == {}
    converted = convert_file(CONVERTERS['ppdet'], theirs, again)
    assert isinstance(converted, Converted) and (converted.number, converted.output) == (0, again)
    assert len(converted.report.mapped) == len(shapes) and converted.report.problems() == 0
    capsys.readouterr()
    assert run_family('to-ppdet', [ours, str(tmp_path / 'theirs2.pdparams')]) == 0
    assert run_family('ppdet', [theirs, str(tmp_path / 'again2.pdparams')]) == 0
    name = CONFIGS[0].__name__
    assert capsys.readouterr().out.splitlines() == [
        f'config 0 ({name}) -> PaddleDetection solov2_r50_fpn_1x_coco or solov2_r50_fpn_3x_coco (num_classes: 80): '
        f'{written.tensors} tensors', f'wrote {tmp_path / "theirs2.pdparams"}',
        *f'config 0 ({name}): {converted.report.summary()}'.splitlines(), f'wrote {tmp_path / "again2.pdparams"}']
