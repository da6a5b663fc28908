"""Lets ``python convert/<name>2paddle.py`` run from a plain clone: runs the scripts' one
bootstrap, tools/_bootstrap, found by path (the project is not importable yet). A folder, left
out of the wheel as that one is."""
import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).resolve().parents[2] / 'tools' / '_bootstrap' / '__init__.py'))
