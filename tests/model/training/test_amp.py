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
    with pytest.raises(InputError, match='fp16 or bf16'):
        amp.amp_dtype('fp8')


def _gpus(monkeypatch, capabilities, cuda='12.6'):
    """Stand-in GPUs of these compute capabilities, numbered from 0, and Paddle's CUDA version."""
    monkeypatch.setattr(paddle.device.cuda, 'get_device_capability', lambda number: capabilities[number])
    monkeypatch.setattr(paddle.version, 'cuda', lambda: cuda)


def test_amp_runs_on_any_gpu_name_and_says_why_not(monkeypatch, caplog):
    _gpus(monkeypatch, [(8, 0), (7, 5)])
    assert amp.runnable_amp('fp16', 'gpu:0') == 'float16' and amp.runnable_amp(True, 'gpu') == 'float16'
    assert amp.runnable_amp('bf16', 'gpu:0') == 'bfloat16'
    with caplog.at_level(logging.WARNING):
        assert amp.runnable_amp('bf16', 'gpu:1') is None
        assert amp.runnable_amp('fp16', 'cpu') is None
    assert 'compute capability 8.0' in caplog.text and 'this one: 7.5' in caplog.text and 'needs a GPU' in caplog.text
    assert amp.make_scaler('bfloat16') is None and amp.make_scaler(None) is None


def test_amp_asks_what_paddle_s_auto_cast_asks(monkeypatch, caplog):
    """auto_cast turns float16 off below 7.0 (Pascal, 6.x), although is_float16_supported says
    yes from 5.3, and bfloat16 below 8.0 or CUDA 11; the process's launcher GPU is the one asked."""
    monkeypatch.setattr(paddle.amp, 'is_float16_supported', lambda device: True)
    _gpus(monkeypatch, [(6, 1), (7, 0)], cuda='10.2')
    with caplog.at_level(logging.WARNING):
        assert amp.runnable_amp('fp16', 'gpu:0') is None and amp.runnable_amp('bf16', 'gpu:0') is None
    assert 'compute capability 7.0 (Volta)' in caplog.text and 'this one: 6.1' in caplog.text
    assert amp.runnable_amp('fp16', 'gpu:1') == 'float16'
    monkeypatch.setenv('FLAGS_selected_gpus', '1')
    assert amp.runnable_amp('fp16', 'gpu') == 'float16'
    _gpus(monkeypatch, [(9, 0)], cuda='10.2')
    assert amp.runnable_amp('bf16', 'gpu:0') is None


def test_the_scaler_starts_where_paddle_s_grad_scaler_does(monkeypatch):
    """make_scaler's docstring names Paddle's GradScaler default (2^16; AmpScaler's is 2^15)."""
    start = float(_gpu_scaler(monkeypatch)._scale.numpy().reshape(-1)[0])
    assert start == 2.0 ** 16 and f'2^{int(np.log2(start))} to start' in amp.make_scaler.__doc__


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
