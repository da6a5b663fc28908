"""mmdetection 2.x / 3.x ``.pth`` -> this project's checkpoint: ``solov2 convert mmdet``
(tools/convert.py) from a checkout; ``--help`` shows its notes."""
if __name__ == '__main__':
    import _bootstrap  # the checkout importable, then the command
    raise SystemExit(_bootstrap.convert('mmdet'))
