"""Data utilities for SOLOv2: image preprocessing, COCO result export and visualisation."""
if not __name__.startswith('solov2.'):      # one name per module (solov2/__init__.py)
    raise ImportError(f'import solov2.{__name__}, not {__name__}: each module of the toolkit has one name')
