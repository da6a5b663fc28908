"""Lets ``python tools/<name>.py`` (and, through convert/_bootstrap and tools/dev/_bootstrap.py,
the converters and the workshop's scripts) run by path from any folder, import the package
``solov2`` from this checkout: the checkout's root (which holds ``solov2/``) goes on
``sys.path`` unless it is there already (e.g. on PYTHONPATH). A folder, not a module, so that
``pip install .`` (whose wheel lists its packages in pyproject.toml) leaves it out: the
installed commands (``solov2 demo``, ...) import their modules as part of the package.
It then imports ``solov2.tools.cli``, whose start-up settings must come before Paddle is imported."""
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import solov2.tools.cli  # noqa: E402,F401
