"""CpuSyncBatchNorm: over two processes it computes what one BatchNorm2D computes on the
joined batch (outputs, every gradient, running statistics)."""
import numpy as np
import paddle
import pytest
from paddle import nn

from solov2.config import CONFIGS
from solov2.core.errors import param
from solov2.model.build import build_model
from solov2.model.layers import ConvNormAct
from solov2.model.training.sync_bn import CpuSyncBatchNorm, convert_sync_bn
from tests.helpers import launch_two_cpu_processes

TWO_RANKS = """
import numpy as np, paddle, paddle.distributed as dist
from paddle import nn
from solov2.model.training.sync_bn import CpuSyncBatchNorm
paddle.set_device('cpu')
dist.init_parallel_env()
rank, world = dist.get_rank(), dist.get_world_size()
rng = np.random.default_rng(0)
x_all = (rng.normal(size=(4, 3, 5, 6)) * 2 + 1).astype('float32')
r_all = rng.normal(size=(4, 3, 5, 6)).astype('float32')
weight, bias = rng.normal(size=(2, 3)).astype('float32')


def make(cls):
    bn = cls(3, momentum=0.9, epsilon=1e-5)
    bn.weight.set_value(weight)
    bn.bias.set_value(bias)
    return bn


def close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


# one process, the whole batch; the loss is the mean over ranks of each rank's loss
joined = make(nn.BatchNorm2D)
x = paddle.to_tensor(x_all, stop_gradient=False)
y = joined(x)
(y * paddle.to_tensor(r_all)).sum().scale(1 / world).backward()
# this rank's half, synchronised; parameter gradients averaged as DataParallel does
synced = make(CpuSyncBatchNorm)
half = slice(2 * rank, 2 * rank + 2)
x_half = paddle.to_tensor(x_all[half], stop_gradient=False)
y_half = synced(x_half)
(y_half * paddle.to_tensor(r_all[half])).sum().backward()
grads = [synced.weight.grad.clone(), synced.bias.grad.clone()]
for grad in grads:
    dist.all_reduce(grad)
close(y_half, y.numpy()[half])
close(x_half.grad, world * x.grad.numpy()[half])   # the input's share of the summed losses
close(grads[0] / world, joined.weight.grad)
close(grads[1] / world, joined.bias.grad)
close(synced._mean, joined._mean)
close(synced._variance, joined._variance)
print('checked rank', rank)
"""


def test_two_processes_match_one_batchnorm_on_the_joined_batch(tmp_path):
    script = tmp_path / 'two_ranks.py'
    script.write_text(TWO_RANKS)
    output = launch_two_cpu_processes(tmp_path, str(script))
    logs = ''.join(path.read_text() for path in sorted((tmp_path / 'logs').glob('workerlog.*')))
    assert 'checked rank 0' in logs and 'checked rank 1' in logs, output[-2000:]


def test_convert_keeps_parameters_and_is_batchnorm_in_one_process():
    paddle.seed(0)
    block = nn.Sequential(ConvNormAct(3, 4, 3), ConvNormAct(4, 32, 3, norm='gn'))
    block[0].norm._mean.set_value(paddle.full([4], 0.5))
    x = paddle.randn([2, 3, 8, 8])
    start = {k: v.numpy() for k, v in block.state_dict().items()}
    expected = block(x).numpy()                        # training mode: updates the statistics
    updated = {k: v.numpy() for k, v in block.state_dict().items()}
    block.set_state_dict(start)
    convert_sync_bn(block, gpu=False)
    assert type(block[0].norm) is CpuSyncBatchNorm and type(block[1].norm) is nn.GroupNorm
    assert {k: v.numpy() for k, v in block.state_dict().items()}.keys() == start.keys()
    assert all(np.array_equal(start[k], v.numpy()) for k, v in block.state_dict().items())
    np.testing.assert_allclose(block(x).numpy(), expected, rtol=1e-6, atol=1e-6)
    assert all(np.allclose(updated[k], v.numpy()) for k, v in block.state_dict().items())


def _bn_layers(model):
    return [layer for layer in model.sublayers() if isinstance(layer, nn.layer.norm._BatchNormBase)]


@pytest.mark.parametrize('gpu', [True, False])
def test_convert_keeps_frozen_bn_frozen(gpu):
    """Config 0 (frozen backbone BN, trained BN elsewhere): the one conversion, with Paddle's
    SyncBatchNorm (the GPU path, built on the CPU here) or CpuSyncBatchNorm, replaces only the
    BN layers that train their statistics; the 53 frozen ones stay BatchNorm2D with global
    statistics and fixed parameters, and every tensor is the one the model held."""
    model = build_model(CONFIGS[0])
    before = {k: v for k, v in model.state_dict().items()}
    frozen = [bn for bn in _bn_layers(model) if bn._use_global_stats]
    training = [bn for bn in _bn_layers(model) if not bn._use_global_stats]
    assert len(frozen) == 53 and all(p.stop_gradient for bn in frozen for p in bn.parameters())
    convert_sync_bn(model, gpu=gpu)
    synced_class = nn.SyncBatchNorm if gpu else CpuSyncBatchNorm
    after = _bn_layers(model)
    assert [bn for bn in after if type(bn) is nn.BatchNorm2D] == frozen
    assert all(bn._use_global_stats and all(p.stop_gradient for p in bn.parameters()) for bn in frozen)
    assert len([bn for bn in after if type(bn) is synced_class]) == len(training) == len(after) - 53
    assert model.state_dict().keys() == before.keys()
    assert all(model.state_dict()[k] is v for k, v in before.items())


def test_a_conversion_that_changes_nothing_says_so_in_one_line(caplog):
    """Every BN frozen (as in each COCO config): --sync-bn would be silently without effect."""
    frozen = nn.Sequential(nn.Conv2D(3, 4, 3), nn.BatchNorm2D(4, use_global_stats=True), nn.GroupNorm(2, 4))
    with caplog.at_level('INFO', logger='solov2.model.training.sync_bn'):
        convert_sync_bn(frozen, gpu=False)
        assert [(r.args, r.getMessage().split(' ', 1)[1]) for r in caplog.records] == [
            ((param('sync_bn', True),), 'changes nothing: every BatchNorm of this model is frozen (freeze_norm: '
                                        'running statistics)')]
        caplog.clear()
        convert_sync_bn(nn.Sequential(nn.BatchNorm2D(4)), gpu=False)
    assert not caplog.records
