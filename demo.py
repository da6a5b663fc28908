"""Segment images, a video or a camera stream with SOLOv2 and save annotated output.

The command is tools/demo.py (module ``solov2.tools.demo``; ``solov2 demo`` once pip-installed);
``--help`` lists its options.
"""
from solov2.tools.demo import main

if __name__ == '__main__':
    raise SystemExit(main())
