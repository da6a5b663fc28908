"""Files shipped with the toolkit: the default model and the sample pictures.

They sit beside the subpackages: in a checkout at the repository's top level (``weights/``,
``images/``), installed inside the ``solov2`` package, so one path works from any folder.
"""
from pathlib import Path

HOME = Path(__file__).resolve().parents[1]
SHIPPED_WEIGHTS = str(HOME / 'weights' / 'shapes_r18.pdparams')   # config 9, 4 shape classes
SAMPLE_IMAGES = str(HOME / 'images')
