"""One training round from a Label Studio project, the process the service starts (serving/training.py;
docs/label_studio.md, "Train from Label Studio"); not a command of its own::

    python -m solov2.tools.training_round ROUND.json        # the Label Studio token in LABEL_STUDIO_API_KEY

It runs ``serving.learning.run_round`` at a lower priority than the service, the tasks converted as
``solov2 labelstudio2coco`` converts an export, and says each step as one JSON line on stdout
(``{"stage", "message"}``), the last ``{"result": {...}}`` or ``{"failed": reason}`` (exit code 1).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ''):
    import _bootstrap  # noqa: F401  (script mode: make the project importable)

from solov2.core.errors import InputError
from solov2.data.coco import read_class_names
from solov2.data.results import write_json
from solov2.serving.learning import Round, run_round
from solov2.serving.limits import HttpError
from solov2.tools.labelstudio2coco import convert


def say(**event: Any) -> None:
    """One progress event as a JSON line on stdout (the service reads them)."""
    print(json.dumps(event), flush=True)


def converted(tasks: list, images: Path, classes: Path, out: Path, key: str) -> None:
    """``tasks`` (part of a JSON export) written to ``out`` as COCO, as ``labelstudio2coco`` converts them with the
    class list ``classes`` and the picture under ``data[key]``."""
    coco, _ = convert(tasks, images, read_class_names(str(classes)), f' {classes}', key)
    write_json(coco, out)


def main(argv: Sequence[str]) -> int:
    """Run the round ``argv[0]`` names; 0 when it ends with a result, 1 when it fails (said last)."""
    if hasattr(os, 'nice'):
        os.nice(10)             # the service's requests first
    job = Round(**json.loads(Path(argv[0]).read_text(encoding='utf-8')))
    try:
        say(result=run_round(job, os.environ.get('LABEL_STUDIO_API_KEY') or None, converted,
                             lambda stage, message: say(stage=stage, message=message)))
    except (InputError, HttpError, OSError, ValueError, KeyError, RuntimeError) as exc:
        say(failed=f'{type(exc).__name__}: {getattr(exc, "message", None) or exc}')
        return 1
    return 0


if __name__ == '__main__':
    raise SystemExit(main(sys.argv[1:]))
