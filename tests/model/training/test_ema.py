"""ModelEMA: the shadow follows ema = d * ema + (1 - d) * w with the ramped decay."""
import math

import numpy as np
import paddle

from solov2.model.training.ema import ModelEMA


def test_shadow_moves_by_the_ramped_decay():
    layer = paddle.nn.Linear(2, 1)
    start = layer.weight.numpy().copy()
    ema = ModelEMA(layer, decay=0.9, ramp=10.0)
    layer.weight.set_value(start + 1.0)
    ema.update(layer)
    d = 0.9 * (1 - math.exp(-1 / 10.0))
    np.testing.assert_allclose(ema.state_dict()['weight'], start + (1 - d), rtol=1e-6)
    ema.update(layer)
    d2 = 0.9 * (1 - math.exp(-2 / 10.0))
    expected = (start + (1 - d)) * d2 + (start + 1.0) * (1 - d2)
    np.testing.assert_allclose(ema.state_dict()['weight'], expected, rtol=1e-6)
    assert ema.updates == 2


def test_update_stays_on_the_device(monkeypatch):
    """No tensor comes to the host during an update (``set_value`` copies through numpy on
    Paddle 2.6), and each shadow tensor is updated in place."""
    layer = paddle.nn.Linear(2, 1)
    ema = ModelEMA(layer, decay=0.9, ramp=10.0)
    shadows = {name: id(tensor) for name, tensor in ema.shadow.items()}
    start = ema.shadow['bias'].numpy().copy()
    layer.bias.set_value(start + 2.0)

    def to_host(*args, **kwargs):
        raise AssertionError('a tensor came to the host')
    monkeypatch.setattr(paddle.Tensor, 'numpy', to_host)
    monkeypatch.setattr(paddle.Tensor, 'set_value', to_host)
    ema.update(layer)
    monkeypatch.undo()
    assert {name: id(tensor) for name, tensor in ema.shadow.items()} == shadows
    d = 0.9 * (1 - math.exp(-1 / 10.0))
    np.testing.assert_allclose(ema.shadow['bias'].numpy(), start + 2.0 * (1 - d), rtol=1e-6)
