"""Helpers shared by several test modules."""
from pathlib import Path

import paddle

from config import CONFIGS
from model.build import build_model

# ../shared beside the repository (the CEO's material: key lists, checkpoint generator)
SHARED_DIR = Path(__file__).resolve().parents[2] / 'shared'


def get_eval_model(pytestconfig, number: int):
    """Config ``number``'s model in eval mode, built once per pytest session and kept on
    the session's pytest config (read-only use: tests/test_model.py, tests/test_demo.py)."""
    cache = pytestconfig.__dict__.setdefault('_solov2_eval_models', {})
    if number not in cache:
        paddle.seed(number)
        model = build_model(CONFIGS[number])
        model.eval()
        cache[number] = model
    return cache[number]
