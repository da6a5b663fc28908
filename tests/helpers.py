"""Helpers shared by several test modules."""
import paddle

from config import CONFIGS
from model.build import build_model


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
