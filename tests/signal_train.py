"""train.py as a user runs it, with SIGNAL sent to itself at one moment:
    python -m tests.signal_train MOMENT K SIGNAL <train.py arguments>      # in the repository

MOMENT K: the K-th model build (build), the backward of step K (backward), after the
K-th image scored in an evaluation (eval, from a worker thread) or after the K-th
checkpoint file written (save). Used by
tests/test_train_interrupts.py.
"""
import os
import runpy
import signal
import sys
import threading

moment, nth, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sys.argv = ['train.py', *sys.argv[4:]]
import solov2.tools.cli  # noqa: F401,E402  (the command's start-up, before Paddle)

# isort: split
import solov2.model.fast_ops as fast_ops  # noqa: E402
import solov2.model.inference.predicting as predicting  # noqa: E402
import solov2.model.training.run as run  # noqa: E402
import solov2.model.training.state as state  # noqa: E402
from solov2.model.training.trainer import Trainer  # noqa: E402

calls = {'n': 0, 'armed': False}
counting = threading.Lock()      # evaluation finishes pictures on two threads at once


def counted(function, after=False):
    def wrapped(*args, **kwargs):
        with counting:
            calls['n'] += 1
            turn = calls['n']          # this call's number: another may count meanwhile
        if turn == nth and not after:
            os.kill(os.getpid(), getattr(signal, name))
        result = function(*args, **kwargs)
        if turn == nth and after:
            os.kill(os.getpid(), getattr(signal, name))
        return result
    return wrapped


def arm(function):
    def wrapped(*args, **kwargs):
        calls['n'] += 1
        calls['armed'] = calls['n'] == nth
        return function(*args, **kwargs)
    return wrapped


def backward(function):
    def wrapped(*args, **kwargs):
        if calls['armed']:
            calls['armed'] = False
            os.kill(os.getpid(), getattr(signal, name))
        return function(*args, **kwargs)
    return staticmethod(wrapped)


if moment == 'build':
    run.build_model = counted(run.build_model)
elif moment == 'backward':
    Trainer.step = arm(Trainer.step)
    fast_ops._ChannelBiasAdd.backward = backward(fast_ops._ChannelBiasAdd.backward)
elif moment == 'eval':
    predicting.instances_to_coco = counted(predicting.instances_to_coco, after=True)
elif moment == 'save':
    state.save_checkpoint = counted(state.save_checkpoint, after=True)
runpy.run_path('train.py', run_name='__main__')
