"""Lets ``python tools/<name>.py`` (and, through convert/_bootstrap.py, the converters) run
from a plain clone: when the project is not installed (``pip install -e .``), its root goes
on ``sys.path``; installed, nothing changes. It imports ``tools.cli`` either way, whose
start-up settings must come before Paddle is imported."""
import sys
from pathlib import Path

try:
    import tools.cli  # noqa: F401  (installed: importable as it is)
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import tools.cli  # noqa: F401
