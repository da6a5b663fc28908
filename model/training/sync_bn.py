"""BatchNorm synchronised across data-parallel processes, on GPUs and CPUs: ``convert_sync_bn``
replaces the BN layers that train their statistics and leaves the frozen ones (Paddle's
``convert_sync_batchnorm`` would un-freeze them). On GPUs Paddle's ``SyncBatchNorm`` (NCCL); it has
GPU kernels only, so on CPUs ``CpuSyncBatchNorm`` sums the statistics over the processes, forward
and backward.
"""
import logging

import paddle
import paddle.distributed as dist
from paddle import nn
from paddle.autograd import PyLayer

from solov2.core.errors import param
from solov2.model.fast_ops import expand_channels, in_input_dtypes

logger = logging.getLogger(__name__)


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
        ctx.count, ctx.dtypes = count, (x.dtype, weight.dtype, bias.dtype)
        return _channel_affine(x, scale, bias - mean * scale)

    @staticmethod
    def backward(ctx, grad):
        """grad_x = scale * (grad - mean_grad - x_hat * mean_grad_xhat), x_hat = (x - mean) * inv_std, with the
        means over every process's batch."""
        x, mean, inv_std, scale = ctx.saved_tensor()
        channels, count = x.shape[1], ctx.count
        local = paddle.concat([grad.sum([0, 2, 3]), (grad * x).sum([0, 2, 3])])
        grad_bias = local[:channels]
        grad_weight = (local[channels:] - mean * grad_bias) * inv_std      # sum(grad * x_hat)
        total = _all_reduce_sum(local)
        mean_grad = total[:channels] / count
        mean_grad_xhat = (total[channels:] / count - mean * mean_grad) * inv_std
        coef = scale * inv_std * mean_grad_xhat
        grad_x = _channel_affine(grad, scale, mean * coef - scale * mean_grad) - x * expand_channels(coef, x)
        return (*in_input_dtypes((grad_x, grad_weight, grad_bias), ctx.dtypes), None, None)


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


def trains_statistics(layer: nn.Layer) -> bool:
    """True for a ``BatchNorm2D`` that normalises a training batch with its own statistics
    (not ``use_global_stats``); a frozen BN uses its running statistics and stays as it is."""
    return type(layer) is nn.BatchNorm2D and not layer._use_global_stats


def _synced(bn: nn.BatchNorm2D, gpu: bool) -> nn.Layer:
    """A synchronised BN (Paddle's ``SyncBatchNorm`` on a GPU, else ``CpuSyncBatchNorm``) that
    holds ``bn``'s own parameters and statistics (the same tensors: their ``stop_gradient``
    and the optimizer's view of them are kept)."""
    cls = nn.SyncBatchNorm if gpu else CpuSyncBatchNorm
    synced = cls(bn._num_features, momentum=bn._momentum, epsilon=bn._epsilon, data_format=bn._data_format)
    synced.weight, synced.bias = bn.weight, bn.bias
    synced._mean, synced._variance = bn._mean, bn._variance
    return synced


def convert_sync_bn(model: nn.Layer, gpu: bool) -> nn.Layer:
    """Replace (in place) every ``BatchNorm2D`` of ``model`` that trains its statistics
    (``trains_statistics``) by a synchronised one on the same tensors: Paddle's
    ``SyncBatchNorm`` when ``gpu``, else ``CpuSyncBatchNorm``. Frozen BN layers are left as
    they are; when that is every one (each COCO config: ``freeze_norm``, the heads' norms are
    GroupNorm), one log line says the conversion changes nothing. Returns ``model``."""
    converted = 0
    for parent in [model, *model.sublayers()]:
        for name, child in list(parent.named_children()):
            if trains_statistics(child):
                setattr(parent, name, _synced(child, gpu))
                converted += 1
    if not converted:
        logger.info('%s changes nothing: every BatchNorm of this model is frozen (freeze_norm: running statistics)',
                    param('sync_bn', True))
    return model
