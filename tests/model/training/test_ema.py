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
