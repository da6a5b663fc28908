"""PaddleDetection 0.5 static-graph ``.pdparams`` -> this project's checkpoint: ``solov2 convert ppdet-static``
(tools/convert.py) from a checkout; ``--help`` shows its notes."""
if __name__ == '__main__':
    import _bootstrap  # the checkout importable, then the command
    raise SystemExit(_bootstrap.convert('ppdet-static'))
