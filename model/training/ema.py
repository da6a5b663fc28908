"""Exponential moving average of model weights (evaluated and saved beside the raw ones)."""
import math
from typing import Dict

import numpy as np
import paddle


class ModelEMA:
    """Shadow weights ``ema = d * ema + (1 - d) * w``, kept on the model's device, with a
    ramp ``d = decay * (1 - exp(-updates / ramp))`` so the early, fast-moving weights do
    not linger. BN statistics are averaged like the parameters."""

    def __init__(self, model: paddle.nn.Layer, decay: float = 0.9998, ramp: float = 2000.0):
        self.decay, self.ramp, self.updates = decay, ramp, 0
        with paddle.no_grad():
            self.shadow: Dict[str, paddle.Tensor] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @paddle.no_grad()
    def update(self, model: paddle.nn.Layer) -> None:
        """One step of the average, on the device (``Tensor.set_value`` would copy each
        tensor to the host and back on Paddle 2.6)."""
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.ramp))
        for name, value in model.state_dict().items():      # in place on the device: no copy to the host
            shadow = self.shadow[name]
            paddle.assign(shadow * d + value.astype(shadow.dtype) * (1 - d), output=shadow)

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Shadow weights as numpy arrays (a model state_dict)."""
        return {k: v.numpy() for k, v in self.shadow.items()}

    def load(self, shadow: Dict[str, np.ndarray], updates: int) -> None:
        for name, value in shadow.items():
            self.shadow[name].set_value(np.asarray(value, dtype=np.float32))
        self.updates = updates
