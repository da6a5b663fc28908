"""torchvision ImageNet ResNet ``.pth`` -> a backbone checkpoint: ``solov2 convert torchvision``
(tools/convert.py) from a checkout; ``--help`` shows its notes."""
if __name__ == '__main__':
    import _bootstrap  # the checkout importable, then the command
    raise SystemExit(_bootstrap.convert('torchvision'))
