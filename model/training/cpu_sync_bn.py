"""BatchNorm synchronised across data-parallel processes on CPU.

Paddle's ``SyncBatchNorm`` has GPU kernels only. With several CPU processes (gloo) each
one would otherwise normalise over its own images: two images per process when four are
split over two cores. ``CpuSyncBatchNorm`` sums the per-channel statistics over the
processes, forward and backward, so training sees the statistics of the whole batch.
"""
import paddle
import paddle.distributed as dist
from paddle import nn
from paddle.autograd import PyLayer

from solov2.model.fast_ops import expand_channels


def _channel_affine(x: paddle.Tensor, scale: paddle.Tensor, shift: paddle.Tensor) -> paddle.Tensor:
    """x [N, C, H, W] * scale [C] + shift [C]."""
    return x * expand_channels(scale, x) + expand_channels(shift, x)


def _all_reduce_sum(tensor: paddle.Tensor) -> paddle.Tensor:
    """The sum of ``tensor`` over the processes (a new tensor)."""
    total = tensor.clone()
    dist.all_reduce(total)
    return total


def _batch_statistics(x: paddle.Tensor, epsilon: float):
    """Per-channel mean, biased variance and 1 / sqrt(var + epsilon) of x [N, C, H, W] over
    every process's batch, each [C], and the total count of values per channel."""
    channels = x.shape[1]
    local = paddle.concat([x.sum([0, 2, 3]), (x * x).sum([0, 2, 3]),
                           paddle.full([1], x.shape[0] * x.shape[2] * x.shape[3], x.dtype)])
    total = _all_reduce_sum(local)
    count = float(total[2 * channels])
    mean = total[:channels] / count
    var = paddle.clip(total[channels:2 * channels] / count - mean * mean, min=0.0)
    return mean, var, paddle.rsqrt(var + epsilon), count


class _SyncBatchNormFunction(PyLayer):
    """y = (x - mean) * inv_std * weight + bias with the batch statistics given; the
    backward sums the gradient's statistics over the processes."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean, inv_std, count):
        scale = weight * inv_std
        ctx.save_for_backward(x, mean, inv_std, scale)
        ctx.count = count
        return _channel_affine(x, scale, bias - mean * scale)

    @staticmethod
    def backward(ctx, grad):
        x, mean, inv_std, scale = ctx.saved_tensor()
        channels, count = x.shape[1], ctx.count
        local = paddle.concat([grad.sum([0, 2, 3]), (grad * x).sum([0, 2, 3])])
        grad_bias = local[:channels]
        grad_weight = (local[channels:] - mean * grad_bias) * inv_std      # sum(grad * x_hat)
        total = _all_reduce_sum(local)
        mean_grad = total[:channels] / count
        mean_grad_xhat = (total[channels:] / count - mean * mean_grad) * inv_std
        # grad_x = scale * (grad - mean_grad - x_hat * mean_grad_xhat), x_hat = (x - mean) * inv_std
        coef = scale * inv_std * mean_grad_xhat
        grad_x = _channel_affine(grad, scale, mean * coef - scale * mean_grad) - x * expand_channels(coef, x)
        return grad_x, grad_weight, grad_bias, None, None


class CpuSyncBatchNorm(nn.BatchNorm2D):
    """``nn.BatchNorm2D`` (same parameters and buffers) whose training statistics cover
    the whole batch of every data-parallel process. With one process, in evaluation or
    with global statistics it is ``nn.BatchNorm2D``."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """x [N, C, H, W] -> [N, C, H, W]."""
        if not self.training or self._use_global_stats or dist.get_world_size() == 1:
            return super().forward(x)
        with paddle.no_grad():
            mean, var, inv_std, count = _batch_statistics(x, self._epsilon)
            keep = self._momentum
            self._mean.set_value(self._mean * keep + mean * (1 - keep))
            self._variance.set_value(self._variance * keep + var * (1 - keep))
        return _SyncBatchNormFunction.apply(x, self.weight, self.bias, mean, inv_std, count)


def convert_cpu_sync_bn(model: nn.Layer) -> nn.Layer:
    """Replace every ``nn.BatchNorm2D`` in ``model`` (in place) by a ``CpuSyncBatchNorm``
    holding the same parameters and statistics. Returns ``model``."""
    for parent in [model, *model.sublayers()]:
        for name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2D:
                synced = CpuSyncBatchNorm(child._num_features, momentum=child._momentum,
                                          epsilon=child._epsilon,
                                          use_global_stats=child._use_global_stats)
                synced.set_state_dict(child.state_dict())
                synced.weight.stop_gradient = child.weight.stop_gradient
                synced.bias.stop_gradient = child.bias.stop_gradient
                setattr(parent, name, synced)
    return model
