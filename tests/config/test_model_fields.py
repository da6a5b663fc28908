"""The fields that name a model and where it runs are declared once (``config.model_fields``):
the model to open and a training run take them from there, and read them alike."""
from dataclasses import fields
from pathlib import Path

import pytest

from solov2 import ModelSpec, TrainOptions
from solov2.config.model_fields import ModelFields

SHARED = [field.name for field in fields(ModelFields)]


@pytest.mark.parametrize('holder', [ModelSpec, TrainOptions])
def test_the_model_fields_are_declared_once(holder):
    assert SHARED == ['weights', 'config', 'overrides', 'device', 'threads']
    assert issubclass(holder, ModelFields)
    assert not set(SHARED) & set(holder.__annotations__), 'a shared field declared again'


@pytest.mark.parametrize('holder', [ModelSpec, TrainOptions])
def test_both_read_paths_and_overrides_alike(holder):
    made = holder(weights=Path('w.pdparams'), overrides={'nms_pre': 100, 'score_threshold': 0.5})
    assert made.weights == 'w.pdparams'
    assert made.overrides == ('nms_pre=100', 'score_threshold=0.5')
    assert holder(overrides=['a=1']).overrides == ('a=1',)
