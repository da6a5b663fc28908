"""SOLOv2 instance segmentation in PaddlePaddle: the toolkit's one import name.

    from solov2 import SHIPPED_WEIGHTS, Segmenter
    seg = Segmenter(SHIPPED_WEIGHTS)           # the shipped shapes model, or your .pdparams
    result = seg('photo.jpg')                  # Instances: masks, labels, scores, boxes

Every module of the toolkit lives under this name: ``solov2.core``, ``solov2.config``,
``solov2.data``, ``solov2.model``, ``solov2.convert``, ``solov2.api`` (the Python API,
re-exported here), ``solov2.serving`` (the HTTP service) and ``solov2.tools`` (the commands).
Installed with pip, those folders sit inside this package; in a checkout each is a real
top-level folder of the repository, and this folder holds only its entry files and a link to
each (``solov2/model -> ../model``), so Python, editors and type checkers all find the same
modules by the same names; where the links are plain files (a Windows clone) the package's
path leads to the folders instead. A folder imported by its bare
name (``import model``) refuses: each module has one name, so one state (locks, caches).
Importing the package is cheap: the API names load Paddle only when first used (a type
checker reads them from the import under ``TYPE_CHECKING``).

It imports Python's ``zlib`` first: Paddle 2.6.x's core library carries its own copy of zlib and
exports its symbols, so when ``paddle`` is imported before it, later users of zlib (pycocotools,
scipy, PNG and JSON writers) bind to Paddle's copy and crash in inflateReset2 ("corrupted size vs.
prev_size"); loading Python's zlib first binds them to the system's. Paddle 3.x is unaffected; the
import costs nothing. Where the host imported Paddle 2.x first, it is too late: ``core.paddle_zlib``
says so in one line instead of the crash.
"""
import os as _os
import sys as _sys
import zlib as _zlib  # noqa: F401
from typing import TYPE_CHECKING

if 'paddle' in _sys.modules:
    from solov2.core.paddle_zlib import check_zlib as _check_zlib
    _check_zlib()

if not _os.path.isdir(_os.path.join(__path__[0], 'model')):     # links as plain files: git on Windows
    __path__.append(_os.path.dirname(__path__[0]))

__version__ = '1.0.0'

__all__ = ['Segmenter', 'ModelSpec', 'Instances', 'Instance', 'evaluate', 'train', 'TrainOptions', 'TrainSummary',
           'start_processes', 'Processes', 'InputError', 'RunError', 'Solov2Error', 'SHIPPED_WEIGHTS', 'SAMPLE_IMAGES',
           'tune_process']
_API = frozenset(__all__)

if TYPE_CHECKING:      # the names as a type checker sees them (solov2.api.__all__)
    from solov2.api import *  # noqa: F403


def __getattr__(name: str):
    """The Python API's names (``solov2.api``), imported on first use."""
    if name in _API:
        from solov2 import api
        return getattr(api, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    """The module's own names and the API's, which load on first use."""
    return sorted(set(globals()) | set(_API))
