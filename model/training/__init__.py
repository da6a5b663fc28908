"""Training SOLOv2: target assignment, losses, the LR schedule, EMA, training state
(atomic checkpoints, resume), data-parallel helpers and the training loop.

Imports the network (``model``) and ``data``; nothing in ``model`` outside this package
imports it.
"""
