"""Lets ``python tools/<name>.py`` (and, through convert/_bootstrap.py, the converters), run by
path from any folder, import the project: it is used from its checkout (not pip-installed),
so the checkout's root goes on ``sys.path`` unless it is there already (e.g. on PYTHONPATH).
It then imports ``tools.cli``, whose start-up settings must come before Paddle is imported."""
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import solov2.tools.cli  # noqa: E402,F401
