"""Device names, checked and normalised in one place (``device_name``): 'cpu', 'gpu' (this
process's GPU, ``gpu_number``) or 'gpu:N'; code asks ``on_gpu`` rather than comparing names. No
Paddle here: the commands check the flag before Paddle loads."""
import os
import re
from typing import Optional

from solov2.core.errors import InputError, param

_NAME = re.compile(r'cpu|gpu(:\d+)?')


def device_name(device: Optional[str]) -> Optional[str]:
    """``device`` as the toolkit names it: 'cpu', 'gpu' or 'gpu:N' (case and surrounding
    spaces ignored); None stays None (the default device). InputError for anything else."""
    if device is None:
        return None
    text = str(device).strip().lower()
    if not _NAME.fullmatch(text):
        raise InputError(param('device', device), " is not a device: use 'cpu', 'gpu' or 'gpu:N' (N: the GPU's "
                         'number, from 0)')
    return text


def gpu_number(device: str) -> int:
    """The GPU number of 'gpu:N' (N) or of 'gpu': this process's GPU, the first of the launcher's
    ``FLAGS_selected_gpus`` (``paddle.distributed.launch`` gives each process its own, numbered
    among ``CUDA_VISIBLE_DEVICES`` as Paddle's ``ParallelEnv`` reads it), else 0. Dygraph
    (``model.runtime.paddle_on``), Paddle Inference and onnxruntime all place by it."""
    number = device_name(device).partition(':')[2] or os.environ.get('FLAGS_selected_gpus', '').split(',')[0]
    return int(number) if number.strip().isdigit() else 0


def on_gpu(device: str) -> bool:
    """True for 'gpu' and 'gpu:N' (any spelling ``device_name`` takes), False for 'cpu'."""
    return device_name(device).startswith('gpu')
