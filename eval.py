"""COCO mask AP (and box AP from the masks' extents) of a SOLOv2 checkpoint or export.

The command is tools/eval.py (module ``solov2.tools.eval``; ``solov2 eval`` once pip-installed);
``--help`` lists its options.
"""
from solov2.tools.eval import main

if __name__ == '__main__':
    raise SystemExit(main())
