"""Train SOLOv2 on a COCO-format dataset.

The command is tools/train.py (module ``solov2.tools.train``; ``solov2 train`` once pip-installed);
``--help`` lists its options.
"""
from solov2.tools.train import main

if __name__ == '__main__':
    raise SystemExit(main())
