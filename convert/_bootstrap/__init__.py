"""Lets ``python convert/<name>2paddle.py`` run from a plain clone: runs the scripts' one
bootstrap, tools/_bootstrap, found by path (the project is not importable yet); ``convert``
then hands the script's arguments to ``solov2 convert FAMILY``. A folder, left out of the wheel
as that one is: the checkout's glue, so that the package ``solov2.convert`` imports no command."""
import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).resolve().parents[2] / 'tools' / '_bootstrap' / '__init__.py'))


def convert(family: str) -> int:
    """``solov2 convert FAMILY`` (tools/convert.py) run with the script's arguments, under its name."""
    from solov2.tools.convert import run_family
    return run_family(family)
