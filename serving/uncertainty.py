"""How unsure the model is of a picture: the ``score`` of each Label Studio prediction (docs/label_studio.md,
"Where the model is least sure"), so that ordering tasks by prediction score, highest first, puts first the
pictures whose correction teaches the model most.

Each candidate instance (every instance the network answers, down to the config's ``update_threshold`` after
Matrix NMS, 0.05 by default; Label Studio receives those from ``SHOWN_MIN_SCORE``) is taken as a yes-or-no
question, "is this an object of its class?", answered yes with probability ``s``, its score; its margin
``|2s - 1|`` is 0 where the model cannot tell (0.5) and 1 where it is sure either way. The picture's uncertainty is
``1 - the least margin`` of its candidates (least-margin uncertainty sampling: Settles, "Active Learning
Literature Survey", 2009, section 3.1), from 0 (sure of every one) to 1; it is 1 when the network finds no
candidate at all (it knows nothing there: a new class, or an empty picture, for a person to look at).
"""
from typing import Any, Callable, Sequence

import numpy as np

from solov2.data.results import SHOWN_MIN_SCORE

NOTHING_FOUND = 1.0         # no candidate at all: a person must look


def uncertainty(scores: Sequence[float]) -> float:
    """The picture's uncertainty from 0 (sure of every instance) to 1 (module docstring) of its candidates'
    ``scores`` (each 0 to 1)."""
    if len(scores) == 0:
        return NOTHING_FOUND
    margins = np.abs(2 * np.asarray(scores, np.float64) - 1)
    return float(1 - margins.min())


def ranked(instances, encode: Callable[..., dict], version: str) -> dict:
    """A Label Studio prediction made by ``encode(instances shown, version=version)`` of a picture's candidate
    ``Instances`` (every score), those from ``SHOWN_MIN_SCORE`` shown, its ``score`` the picture's
    ``uncertainty`` (rounded to 4 places)."""
    prediction: Any = encode(instances.filter(SHOWN_MIN_SCORE), version=version)
    return {**prediction, 'score': round(uncertainty(instances.scores.tolist()), 4)}
