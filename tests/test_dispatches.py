"""Each dispatch on a named choice inside the product refuses a value it does not know with one line naming it,
rather than falling through to one of the choices it knows (the guide: a dispatch on a named choice fails on an
unknown one)."""
import types
from pathlib import Path

import numpy as np
import pytest


def _one_line(raised: pytest.ExceptionInfo, value: str) -> None:
    message = str(raised.value)
    assert repr(value) in message and '\n' not in message, message


def test_the_service_answers_only_in_the_forms_it_knows():
    from solov2.api.instances import Instances
    from solov2.data.masks import CroppedMasks
    from solov2.serving.app import answer_content
    found = Instances(CroppedMasks([], np.zeros((0, 4)), (4, 4)), np.zeros(0, np.int64), np.zeros(0), ('a',))
    assert answer_content(found, 'instances', 'rle', 'p.jpg', 0.0, 'v1')['instances'] == []
    with pytest.raises(ValueError) as raised:
        answer_content(found, 'xml', 'rle', 'p.jpg', 0.0, 'v1')
    _one_line(raised, 'xml')


def test_labelme_shapes_only_of_the_kinds_it_knows():
    from solov2.data.labelme import instance_shapes
    crop = np.ones((3, 3), bool)
    assert instance_shapes(crop, (0, 0, 3, 3), 'a', 0.5, 1, 'mask')[0]['shape_type'] == 'mask'
    with pytest.raises(ValueError) as raised:
        instance_shapes(crop, (0, 0, 3, 3), 'a', 0.5, 1, 'circle')
    _one_line(raised, 'circle')


def test_label_studio_predictions_only_of_the_region_kinds_it_knows():
    from solov2.api.instances import Instances
    from solov2.data.label_studio import LabelTag
    from solov2.data.masks import CroppedMasks
    from solov2.serving.label_studio import prediction
    answer = Instances(CroppedMasks([], np.zeros((0, 4)), (4, 4)), np.zeros(0, np.int64), np.zeros(0), ('a',))
    assert prediction(answer, LabelTag('brush', 'tag', 'image', 'image', ('a',)), {}, 'v')['result'] == []
    with pytest.raises(ValueError) as raised:
        prediction(answer, LabelTag('rectangle', 'tag', 'image', 'image', ('a',)), {}, 'v')
    _one_line(raised, 'rectangle')


def test_paddledetection_stem_names_only_of_the_variants_it_knows():
    from solov2.convert.ppdet_names import stem_conv
    assert stem_conv(1, types.SimpleNamespace(variant='d')) == 'conv1_2'
    with pytest.raises(ValueError) as raised:
        stem_conv(0, types.SimpleNamespace(variant='c'))
    _one_line(raised, 'c')


def test_a_loss_scaler_only_for_the_training_types_it_knows():
    from solov2.model.training.amp import make_scaler
    assert make_scaler(None) is None and make_scaler('bfloat16') is None
    with pytest.raises(ValueError) as raised:
        make_scaler('float64')
    _one_line(raised, 'float64')


def test_openvino_size_buckets_only_for_the_settings_it_knows():
    from solov2.model.inference.backend import BackendError
    from solov2.model.inference.openvino_backend import bucketed
    assert bucketed('int8', 'int8') and not bucketed('int8', 'f32') and bucketed('all', 'f32')
    assert not bucketed('none', 'int8')
    with pytest.raises(BackendError) as raised:
        bucketed('some', 'int8')
    _one_line(raised, 'some')


def test_an_export_only_in_the_formats_it_knows(tmp_path: Path):
    from solov2.model.inference.export import ExportError, export
    with pytest.raises(ExportError) as raised:
        export(types.SimpleNamespace(), 9, tmp_path / 'out', fmt='tflite')  # type: ignore[arg-type]
    _one_line(raised, 'tflite')
    assert not (tmp_path / 'out').exists()
