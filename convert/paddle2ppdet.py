"""This project's checkpoint -> PaddleDetection 2.x ``.pdparams``: ``solov2 convert to-ppdet``
(tools/convert.py) from a checkout; ``--help`` shows its notes."""
if __name__ == '__main__':
    import _bootstrap  # the checkout importable, then the command
    raise SystemExit(_bootstrap.convert('to-ppdet'))
