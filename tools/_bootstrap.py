"""Lets ``python tools/<name>.py`` (and, through convert/_bootstrap.py, the converters), run by
path from any folder, import the package ``solov2`` from this checkout: the checkout's root
(which holds ``solov2/``) goes on ``sys.path`` unless it is there already (e.g. on PYTHONPATH).
A pip-installed command (``solov2-export``, ...) imports the module as part of the package and
never runs this.
It then imports ``solov2.tools.cli``, whose start-up settings must come before Paddle is imported."""
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import solov2.tools.cli  # noqa: E402,F401
