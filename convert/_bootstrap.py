"""Lets ``python convert/<name>2paddle.py`` run from a plain clone: when the project is
not installed (``pip install -e .``), its root goes on ``sys.path``; installed, nothing
changes. It imports ``config`` either way, which silences the library warnings before
Paddle is imported."""
import sys
from pathlib import Path

try:
    import config  # noqa: F401  (installed: importable as it is)
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import config  # noqa: F401
