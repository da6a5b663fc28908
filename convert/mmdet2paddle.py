"""``solov2 convert mmdet`` from a checkout (tools/convert.py; ``--help`` shows its notes)."""
if __name__ == '__main__':
    import _bootstrap  # the checkout importable, then the command
    raise SystemExit(_bootstrap.convert('mmdet'))
