"""``python -m solov2 COMMAND ...``: the console command ``solov2`` (tools/main.py), for where
pip's bin/ folder is not on PATH or from a checkout's root folder."""
from solov2.tools.main import main

if __name__ == '__main__':
    raise SystemExit(main())
