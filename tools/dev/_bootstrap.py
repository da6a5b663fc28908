"""Lets ``python tools/dev/<name>.py`` run from a checkout: runs the scripts' one bootstrap,
tools/_bootstrap, found by path (the project is not importable yet)."""
import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).resolve().parents[1] / '_bootstrap' / '__init__.py'))
