"""Mixed precision of a training run: the half type (``--amp fp16|bf16``), whether ``auto_cast`` runs
it on the device (GPUs only), and the float16 loss scaler with its state (kept by checkpoints). Only
the forward runs under ``auto_cast`` (O1); the loss casts the heads' outputs to float32."""
import logging
from typing import Optional

import numpy as np
import paddle

from solov2.config.device import gpu_number, on_gpu
from solov2.core.errors import InputError, param

logger = logging.getLogger(__name__)
AMP_TYPES = {'fp16': 'float16', 'bf16': 'bfloat16'}
NEEDS = {'float16': (7, 'compute capability 7.0 (Volta)'), 'bfloat16': (8, 'compute capability 8.0 (Ampere), CUDA 11')}


def amp_dtype(amp) -> Optional[str]:
    """``TrainOptions.amp`` as a dtype: False, None or '' -> None (float32); True or 'fp16' ->
    'float16'; 'bf16' -> 'bfloat16'. InputError for anything else."""
    if amp is None or amp is False or amp == '':
        return None
    key = 'fp16' if amp is True else amp
    if key not in AMP_TYPES:
        raise InputError(param('amp', amp), f' is not a precision: use {" or ".join(AMP_TYPES)}')
    return AMP_TYPES[key]


def runnable_amp(amp, device: str) -> Optional[str]:
    """The half type a run on ``device`` trains its forward in: ``amp_dtype(amp)`` where Paddle's
    ``auto_cast`` runs it there (a GPU of ``NEEDS``), else None (float32) with a warning that says why.
    ``NEEDS``: the least GPU (compute capability major) on which Paddle's auto_cast runs each type (2.6, 3.x);
    below it auto_cast turns itself off, though ``paddle.amp.is_float16_supported`` says yes from 5.3."""
    dtype = amp_dtype(amp)
    if dtype is None:
        return None
    if not on_gpu(device):
        logger.warning("%s needs a GPU (Paddle's auto_cast does nothing on the CPU); training in float32",
                       param('amp', amp))
        return None
    major, minor = paddle.device.cuda.get_device_capability(gpu_number(device))
    cuda = str(paddle.version.cuda()).split('.')[0]
    if major < NEEDS[dtype][0] or (dtype == 'bfloat16' and not (cuda.isdigit() and int(cuda) >= 11)):
        logger.warning("%s needs a GPU with %s for Paddle's auto_cast (this one: %d.%d, CUDA %s); training in float32",
                       param('amp', amp), NEEDS[dtype][1], major, minor, paddle.version.cuda())
        return None
    return dtype


def make_scaler(dtype: Optional[str]) -> Optional[paddle.amp.GradScaler]:
    """The loss scaler of a float16 run (Paddle's GradScaler defaults: 2^16 to start, dynamic); None for
    bfloat16 (float32's exponent range: nothing to scale) and float32 (None); ValueError for another dtype."""
    if dtype not in (None, *AMP_TYPES.values()):
        raise ValueError(f"a training dtype is None (float32), {' or '.join(AMP_TYPES.values())}, not {dtype!r}")
    return paddle.amp.GradScaler() if dtype == 'float16' else None


def scaler_state(scaler: Optional[paddle.amp.GradScaler]) -> dict:
    """``scaler``'s state as JSON values (``state.json``): ``GradScaler.state_dict()`` with the
    scale as a list of floats; {} without a scaler."""
    return {k: (np.asarray(v, np.float64).reshape(-1).tolist() if k == 'scale' else v)
            for k, v in (scaler.state_dict() if scaler is not None else {}).items()}


def restore_scaler(scaler: Optional[paddle.amp.GradScaler], saved: dict) -> None:
    """Put ``saved`` (``scaler_state``) back into ``scaler``; a checkpoint without a scaler's
    state (a float32 or bfloat16 run, or an older one) leaves it at its start."""
    if scaler is not None and saved:
        scaler.load_state_dict(saved)
