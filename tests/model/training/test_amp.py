"""Mixed precision (model.training.amp): --amp fp16|bf16, AMP only where Paddle's auto_cast
runs it (GPUs, any of their names), and the float16 loss scaler's state kept by checkpoints.
Paddle's auto_cast and GradScaler do nothing on a CPU place (Paddle 2.6 and 3.3), so the
scaler here is built as on a GPU by handing its constructor a GPU place (a stand-in tracer)."""
import json
import logging
import types

import numpy as np
import paddle
import pytest

from solov2.core.errors import InputError
from solov2.model.training import amp
from solov2.model.training.trainer import Schedule, Trainer
from solov2.tools import train


@pytest.mark.parametrize('given, dtype', [(False, None), (None, None), (True, 'float16'), ('fp16', 'float16'),
                                          ('bf16', 'bfloat16')])
def test_amp_names(given, dtype):
    assert amp.amp_dtype(given) == dtype


def test_amp_flag_alone_is_fp16_and_bf16_is_named():
    assert train.options_from_args(train.parse_args(['--amp'])).amp == 'fp16'
    options = train.options_from_args(train.parse_args(['--amp', 'bf16', '--sync-bn']))
    assert options.amp == 'bf16' and options.sync_bn
    assert train.parse_args([]).amp is False
    assert train.command_args(options)[:2] == ['--amp', 'bf16']
    with pytest.raises(InputError, match='fp16 or bf16'):
        amp.amp_dtype('fp8')


def test_amp_runs_on_any_gpu_name_and_says_why_not(monkeypatch, caplog):
    monkeypatch.setattr(paddle.amp, 'is_float16_supported', lambda device: device.startswith('gpu'))
    monkeypatch.setattr(paddle.amp, 'is_bfloat16_supported', lambda device: False)
    assert amp.runnable_amp('fp16', 'gpu:0') == 'float16' and amp.runnable_amp(True, 'gpu') == 'float16'
    with caplog.at_level(logging.WARNING):
        assert amp.runnable_amp('bf16', 'gpu:1') is None
        assert amp.runnable_amp('fp16', 'cpu') is None
    assert 'compute capability 8.0' in caplog.text and 'needs a GPU' in caplog.text
    assert amp.make_scaler('bfloat16') is None and amp.make_scaler(None) is None


def _gpu_scaler(monkeypatch, **kwargs):
    """A GradScaler built as on a GPU (its constructor sees a GPU place); it runs on the CPU."""
    place = types.SimpleNamespace(is_gpu_place=lambda: True, is_xpu_place=lambda: False,
                                  is_custom_place=lambda: False)
    monkeypatch.setattr(paddle.amp.grad_scaler, '_dygraph_tracer', lambda: types.SimpleNamespace(_expected_place=place))
    scaler = paddle.amp.GradScaler(**kwargs)
    monkeypatch.undo()
    return scaler


def test_scaler_state_goes_through_state_json_and_back(monkeypatch):
    scaler = _gpu_scaler(monkeypatch, init_loss_scaling=1024.0, incr_every_n_steps=2)
    layer = paddle.nn.Linear(3, 1)
    optimizer = paddle.optimizer.SGD(0.1, parameters=layer.parameters())
    for _ in range(3):                                   # two finite steps double the scale
        with paddle.amp.auto_cast(level='O1', dtype='float16'):      # as Trainer.step (no casts on a CPU)
            loss = layer(paddle.ones([2, 3])).sum()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.clear_grad()
    trainer = Trainer(None, layer, optimizer, None, Schedule(0.1, 10, 5, 10), scaler=scaler)
    saved = json.loads(json.dumps(trainer.checkpoint_state()))['scaler']
    assert saved['scale'] == [2048.0] and saved['incr_count'] == 1
    resumed = _gpu_scaler(monkeypatch)
    amp.restore_scaler(resumed, saved)
    assert {k: np.asarray(v).tolist() for k, v in resumed.state_dict().items()} == saved
    amp.restore_scaler(resumed, {})                     # a float32 run's checkpoint: the scaler stays
    assert float(resumed.state_dict()['scale'][0]) == 2048.0
