"""Checkpoint converters: rename rules from this project's parameter names to a source family's,
applied by ``convert.common``, which refuses partial results. ``solov2 convert FAMILY SOURCE OUTPUT``
(tools/convert.py; in a checkout ``python convert/<source>2paddle.py SOURCE OUTPUT``)."""
if not __name__.startswith('solov2.'):      # one name per module (solov2/__init__.py)
    raise ImportError(f'import solov2.{__name__}, not {__name__}: each module of the toolkit has one name')
